#!/usr/bin/env bash
# Two gateway builds side by side on the same demo data and config (audit trail on),
# driven in turn (A B A B ...) by permitgate-load: for "did this change cost anything".
# Reports throughput, p99 and the server's CPU time per request (user + system, from
# /proc, over the measured run and its warm-up), and B's ratios to A round by round.
#
#   loadtest/ab.sh OLD_BINARY NEW_BINARY        # ROUNDS=3 DURATION=10 CONNS=16
#
# Build the old one from a worktree, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#       cargo build --release -p permitgate)
# Uses 127.0.0.1:18443 (partners) and :19464 (metrics). Prints each run, then medians.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?old binary}
B=${2:?new binary}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
DIR=${DIR:-target/ab-demo}
cargo build --release -q -p permitgate-load
LOAD=target/release/permitgate-load

ready() {
    for _ in $(seq 1 300); do
        (exec 3<>/dev/tcp/127.0.0.1/19464 && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 &&
            head -n 1 <&3 | grep -q ' 200 ') 2>/dev/null && return 0
        sleep 0.2
    done
    echo "gateway did not become ready"; return 1
}

rm -rf "$DIR"
"$B" demo --dir "$DIR" --records 100000 --listen 127.0.0.1:18443 \
    --metrics-listen 127.0.0.1:19464 --verify-listen 127.0.0.1:0 >"$DIR.log" 2>&1 &
pid=$!
ready
kill -TERM "$pid"; wait "$pid" || true

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A rps p99 cpu
for round in $(seq 1 "$ROUNDS"); do
    for side in A B; do
        bin=$A; [ "$side" = B ] && bin=$B
        rm -rf "$DIR/audit"
        "$bin" serve --config "$DIR/gateway.toml" >>"$DIR.log" 2>&1 &
        pid=$!
        ready
        before=$(ticks "$pid")
        out=$("$LOAD" --demo "$DIR" --target 127.0.0.1:18443 --connections "$CONNS" \
            --duration "$DURATION" --warmup 1)
        after=$(ticks "$pid")
        kill -TERM "$pid"; wait "$pid" || true
        line=$(grep -m1 'req/s' <<<"$out")
        requests=$(grep -m1 -oE '^[0-9]+ requests' <<<"$out" | cut -d' ' -f1)
        us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
            'BEGIN { printf "%.2f", 1e6 * t / hz / n }')
        echo "$side round $round: $line $(grep -m1 'p99' <<<"$out") cpu ${us} us/req"
        rps[$side]+="$(sed -E 's/.* ([0-9]+) req\/s.*/\1/' <<<"$line") "
        p99[$side]+="$(grep -m1 -oE 'p99 [0-9.]+' <<<"$out" | cut -d' ' -f2) "
        cpu[$side]+="$us "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for side in A B; do
    echo "$side median: $(median <<<"${rps[$side]}") req/s, p99 $(median <<<"${p99[$side]}") ms, cpu $(median <<<"${cpu[$side]}") us/req"
done
# The machine drifts between rounds more than most changes move it; B over the A run just
# before it, round by round, cancels the drift that both share.
ratios() {
    paste -d' ' <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) |
        awk '{ printf "%.3f ", $2 / $1 }'
}
echo "B/A per round: req/s $(ratios "${rps[A]}" "${rps[B]}")(median $(ratios "${rps[A]}" "${rps[B]}" | median)), cpu/req $(ratios "${cpu[A]}" "${cpu[B]}")(median $(ratios "${cpu[A]}" "${cpu[B]}" | median))"

