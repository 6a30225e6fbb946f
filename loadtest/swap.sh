#!/usr/bin/env bash
# A new 10M-document base swapped in under load (issue 16, target 3).
#
#   loadtest/swap.sh            # ROUNDS=5 WINDOW=4 DOCS=10000000 by default
#
# The gateway as shipped (audit on) serves its repository (`snapshot.repo`, watched) holding
# a 10M-document base: the demo's residents plus filler documents. First the sustainable
# rate R (closed loop, 16 connections, link checks); then, each round, two open-loop runs
# of WINDOW seconds at R/2: one without a swap, one during which a new 10M publication
# lands in the repository 1 s after the start (its objects were copied in before the runs;
# the manifest is renamed over the old one, as a sync from the publisher ends). The gateway notices it, reads,
# verifies and indexes the new base off the request workers and swaps it in. The
# publications are prepared before any load (one per round, each with the next version),
# so publishing costs nothing during the runs. Reported per round: p99 and p99.9 of both
# runs, their ratio, failed requests, that the served version moved, and how long the swap
# took (`permitgate_base_swap_duration_seconds`; waited for when it outlasts the window, so
# choose WINDOW to hold it). PG=path/to/permitgate
# measures another build with the same script. COLD=1 leaves the objects wherever the VM's
# page cache left them (see the loop).
# Ports 18843 (gateway) and 19865 (metrics). Results: target/swap/. Disk: about
# (ROUNDS + 2) x 0.33 GB under DIR, plus a 0.9 GB export.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
WINDOW=${WINDOW:-4}
DOCS=${DOCS:-10000000}
DIR=${DIR:-var/bench-swap}
OUT=${OUT:-target/swap}
ADDR=127.0.0.1:18843
METRICS=127.0.0.1:19865
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)


. loadtest/common.sh
trap stop EXIT
version() { curl -sf "http://$METRICS/metrics" | awk '/^permitgate_snapshot_version / {print $2}'; }
# Seconds spent taking in new bases so far (the histogram's sum).
swap_seconds() { curl -sf "http://$METRICS/metrics" | awk '/^permitgate_base_swap_duration_seconds_sum / {print $2}'; }

demo_once "$DIR" "$ADDR" "$METRICS" "$OUT/demo.log"
DIR=$(cd "$DIR" && pwd)
KEYS=(--signing-key "$DIR/keys/publisher.key" --hash-key "$DIR/keys/hash.key")

# The 10M export: the demo's residents (what the load generator asks about) and filler
# travel permits numbered past every demo number.
if [ ! -f "$DIR/export-big.jsonl" ]; then
    echo "== writing an export of $DOCS documents"
    python3 - "$DIR/export.jsonl" "$DIR/export-big.jsonl" "$DOCS" <<'PY'
import json, sys
src, dst, docs = sys.argv[1], sys.argv[2], int(sys.argv[3])
used, n = set(), 0
with open(dst, "w") as out:
    for line in open(src):
        out.write(line)
        for d in json.loads(line)["documents"]:
            # A travel permit's renewal count is not part of its identity: H12345678 and
            # H1234567803 are one document.
            used.add(d["number"][:9])
            n += 1
    i = 0
    while n < docs:
        number = f"H{i:08d}"
        i += 1
        if number in used:
            continue
        out.write(f'{{"person":"filler{i}","documents":[{{"number":"{number}","status":"valid","valid_until":"2031-01-01"}}]}}\n')
        n += 1
PY
fi

# The live repository starts at the big base; each round's publication is staged apart.
echo "== publishing the base and $ROUNDS staged publications"
rm -rf "$DIR/stage" && mkdir -p "$DIR/stage"
"$PG" publish --input "$DIR/export-big.jsonl" --out "$DIR/repo" "${KEYS[@]}" >/dev/null
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["signed"]["version"])' "$DIR/repo/manifest.json")
for r in $(seq 1 "$ROUNDS"); do
    "$PG" publish --input "$DIR/export-big.jsonl" --out "$DIR/stage/$r" --version "$((base + r))" "${KEYS[@]}" >/dev/null
done

# Objects first, long before the manifests that name them (as a sync would copy them):
# copying 0.33 GB must not run on these cores during a measured window.
for r in $(seq 1 "$ROUNDS"); do cp "$DIR/stage/$r/objects/"* "$DIR/repo/objects/"; done

rm -rf "$DIR/audit"
"$PG" serve --config "$DIR/gateway.toml" >"$OUT/gateway.log" 2>&1 &
PID=$!
ready "$METRICS" "$OUT/gateway.log"

load() { # JSON ARGS...
    local json=$1; shift
    "$LOAD" --demo "$DIR" --target "$ADDR" --warmup 1 --json "$json" "$@" >/dev/null
}

load "$OUT/max.json" --duration 8 --connections 16
HALF=$(field "$OUT/max.json" 'int(r["requests_per_second"] / 2)')
echo "== sustainable rate $(field "$OUT/max.json" 'round(r["requests_per_second"])') req/s; open loop at $HALF req/s, $WINDOW s windows"

echo "| round | p99 no swap | p99 with swap | ratio | p99.9 no swap | p99.9 with swap | failed (with swap) | version | swap took |" | tee "$OUT/summary.md"
echo "|---|---|---|---|---|---|---|---|---|" | tee -a "$OUT/summary.md"
# sched NAME: with PERF_SCHED=1, in round 1, the scheduler's events over the next window
# (SCHED is the recorder's pid, to wait for; empty without).
SCHED=
sched() {
    SCHED=
    [ -n "${PERF_SCHED:-}" ] && [ "$r" = 1 ] || return 0
    perf sched record -a -o "$OUT/sched-$1.data" -- sleep "$((WINDOW + 1))" >/dev/null 2>&1 &
    SCHED=$!
}
# The round's objects, as the repository holds them.
objects() { for o in "$DIR/stage/$r/objects/"*; do echo "$DIR/repo/objects/${o##*/}"; done; }
resident() { fincore --bytes --noheadings --output RES $(objects) | awk '{ s += $1 } END { print s }'; }
size() { du -cb $(objects) | tail -n 1 | cut -f1; }
for r in $(seq 1 "$ROUNDS"); do
    # A sync that just finished leaves its objects in the page cache. This VM pages out
    # file pages it finds cold (a DAMON pageout scheme), even with most memory free: half
    # an hour after a run, 7-20 % of its objects were on disk only, and a round that came
    # late enough would read that much from disk. Read them in now, as the sync would
    # have, unless COLD=1; say how much was still resident either way.
    cached=$(python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.0%}")' "$(resident)" "$(size)")
    [ "${COLD:-0}" = 1 ] || cat $(objects) >/dev/null
    echo "   round $r: objects resident in the page cache before the round: $cached$([ "${COLD:-0}" = 1 ] || echo ', then read in')"
    sched calm
    load "$OUT/calm-$r.json" --duration "$WINDOW" --connections 16 --rate "$HALF"
    [ -z "$SCHED" ] || wait "$SCHED"
    before=$(version)
    spent=$(swap_seconds)
    sched swap
    load "$OUT/swap-$r.json" --duration "$WINDOW" --connections 16 --rate "$HALF" &
    loadpid=$!
    # The generator's 1 s warm-up, then 1 s into the measured window.
    sleep 2
    mv "$DIR/stage/$r/manifest.json" "$DIR/repo/manifest.json"
    wait "$loadpid"
    [ -z "$SCHED" ] || wait "$SCHED"
    # A paced swap may outlast the window: waited for (and its time shown), up to 30 s;
    # its time is recorded just after the version moves (a build without the histogram
    # has none to wait for).
    for _ in $(seq 1 300); do
        [ "$(version)" != "$before" ] && { [ -z "$spent" ] || [ "$(swap_seconds)" != "$spent" ]; } && break
        sleep 0.1
    done
    after=$(version)
    [ "$after" != "$before" ] || { echo "round $r: the gateway did not swap ($before)"; exit 1; }
    took=$(python3 -c '
import sys
try: print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")
except ValueError: print("?")  # a build without the histogram' "$spent" "$(swap_seconds)")
    python3 - "$OUT/calm-$r.json" "$OUT/swap-$r.json" "$r" "$before" "$after" "$took" <<'PY' | tee -a "$OUT/summary.md"
import json, sys
calm, swap = (json.load(open(p)) for p in sys.argv[1:3])
r, before, after, took = sys.argv[3:]
c, s = calm["latency"], swap["latency"]
print(f"| {r} | {c['p99_ms']:.3f} ms | {s['p99_ms']:.3f} ms | {s['p99_ms'] / c['p99_ms']:.2f}x | "
      f"{c['p999_ms']:.3f} ms | {s['p999_ms']:.3f} ms | {swap['errors']} of {swap['requests']} | {before} -> {after} | {took} s |")
PY
done
grep -E "swapped|snapshot" "$OUT/gateway.log" | tail -n "$ROUNDS" || true
stop
rm -rf "$DIR/stage" "$DIR/audit"
