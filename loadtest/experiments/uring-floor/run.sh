#!/bin/bash
# Rounds of the floor on each driver, core against core: the floor on CPU 0, the load
# generator (16 keep-alive connections) on CPU 1. Per run: requests a second, the floor's
# CPU per request (user + system, from /proc over the middle of the run), and the
# generator's own CPU in cores (near 1.0: the generator set the pace).
#
#   cargo build --release -p permitgate -p permitgate-load            # from the repository
#   cargo build --release --manifest-path loadtest/experiments/uring-floor/Cargo.toml
#   bash loadtest/experiments/uring-floor/run.sh var/bench-compare 5 epoll uring-defer uring-coop
# DEMO: any demo directory (its PKI is used); `scenario compare` makes var/bench-compare.
set -euo pipefail
demo=$1 rounds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
floor=$here/target/release/uring-floor
load=$root/target/release/permitgate-load
out=$(mktemp -d)
echo "reports in $out"
# About as long as the gateway's answer to a link check (245 bytes).
printf '{"linked":true,"travel_permit":{"status":"valid","valid_until":"2031-05-01"},"residence_permit":{"status":"valid","valid_until":"2029-09-30"},"checked_at":"2026-12-06T14:00:00+08:00","snapshot":{"version":42,"published_at":"2026-12-06T13:59:00+08:00"}}' > "$out/answer.json"
secs=8 port=9555
pid=
# A run that fails leaves no floor behind.
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null' EXIT
ticks=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
  for mode in "$@"; do
    taskset -c 0 "$floor" "$mode" "127.0.0.1:$port" "$demo" "$out/answer.json" &
    pid=$!
    for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null || { echo "uring-floor $mode did not start" >&2; exit 1; }
    taskset -c 1 "$load" --demo "$demo" --target "127.0.0.1:$port" --connections 16 \
      --duration $secs --warmup 1 --json "$out/$mode-$r.json" > "$out/$mode-$r.log" &
    lp=$!
    sleep 1.5
    a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep $((secs - 2))
    b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    wait $lp
    kill $pid
    wait $pid 2>/dev/null || true
    pid=
    python3 - "$out/$mode-$r.json" "$mode" "$r" "$a" "$b" $((secs - 2)) "$ticks" <<'PY'
import json, sys
path, mode, r, a, b, dt, ticks = sys.argv[1:]
d = json.load(open(path))
rps = d["requests_per_second"]
us = 1e6 * (float(b) - float(a)) / float(ticks) / float(dt) / rps
print(f"{mode:12s} round {r}: {rps:9.0f} req/s  {us:5.2f} us/req  generator {d['generator_cpu']:.2f} cores  errors {d['errors']}")
PY
  done
done
