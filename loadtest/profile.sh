#!/usr/bin/env bash
# Profiles a running permitgate under a load: perf samples the server (software cpu-clock,
# call graphs) while permitgate-load runs, then prints where the time went, by component,
# and the top symbols.
#
#   loadtest/profile.sh PID [permitgate-load args...]
#   loadtest/profile.sh "$(pgrep -f 'permitgate demo')" --demo var/bench --target 127.0.0.1:18443 --receipt-share 1
#
# Needs perf (Debian's linux-perf). Output and perf.data in target/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
PID=$1
shift
OUT=${OUT:-target/profile}
SECONDS_TO_SAMPLE=${SECONDS_TO_SAMPLE:-5}
mkdir -p "$OUT"
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
target/release/permitgate-load --warmup 1 --duration $((SECONDS_TO_SAMPLE + 2)) "$@" >"$OUT/load.txt" &
LOAD=$!
sleep 1.5
perf record -q -e cpu-clock -F 2000 -g -p "$PID" -o "$OUT/perf.data" -- sleep "$SECONDS_TO_SAMPLE" 2>/dev/null
wait "$LOAD" || true
cat "$OUT/load.txt"
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio 2>/dev/null >"$OUT/report.txt"
python3 - "$OUT/report.txt" <<'PY'
import collections, re, sys
cats, top = collections.Counter(), []
rules = [
    ("ed25519 (curve25519, sha512)", ("curve25519", "sha512", "ed25519")),
    ("TLS records and handshakes (rustls, ring)", ("rustls", "ring::", "ring_core", "aes", "gcm", "chacha", "p256", "ecp_nistz")),
    ("HTTP (hyper, h2)", ("hyper", "h2::", "http::")),
    ("JSON (serde_json)", ("serde", "json")),
    ("async runtime (tokio)", ("tokio", "mio::")),
    ("allocation and copies", ("malloc", "free", "realloc", "memmove", "memcpy", "memset", "alloc::")),
    ("keyed hashing (blake3)", ("blake3",)),
    ("permitgate", ("permitgate",)),
]
for line in open(sys.argv[1]):
    m = re.match(r"\s+([0-9.]+)%\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, kind, sym = float(m.group(1)), m.group(2), m.group(3).strip()
    if len(top) < 15:
        top.append((pct, sym[:110]))
    if kind == "k":
        cats["kernel (sockets, scheduling)"] += pct
        continue
    for name, needles in rules:
        if any(n.lower() in sym.lower() for n in needles):
            cats[name] += pct
            break
    else:
        cats["other"] += pct
print("\nserver CPU by component:")
for name, pct in cats.most_common():
    print(f"  {pct:5.1f}%  {name}")
print("\ntop symbols:")
for pct, sym in top:
    print(f"  {pct:5.1f}%  {sym}")
PY
