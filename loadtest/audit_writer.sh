#!/usr/bin/env bash
# What the audit trail's writer thread costs under a closed-loop load: its CPU time per
# record, and how many records each write(2) carries (one batch, one seal, one write).
#
#   loadtest/audit_writer.sh [BINARY...]     # ROUNDS=2 CONNS=16; default: this build
#
# Builds alternate within each round. Measures 5 s of an 8 s run, the writer thread alone
# (its CPU from /proc, its writes from perf's syscall tracepoints). Needs perf (Debian's
# linux-perf). Ports 18943 (partners) and 19965 (metrics); demo data in var/bench-audit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-16}
DIR=${DIR:-var/bench-audit}
ADDR=127.0.0.1:18943
METRICS=127.0.0.1:19965
mkdir -p "$(dirname "$DIR")"

. loadtest/common.sh
trap stop EXIT
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
[ $# -gt 0 ] || set -- "$PG"
demo_once "$DIR" "$ADDR" "$METRICS" "$DIR.log"
DIR=$(cd "$DIR" && pwd)
demo_config "$DIR" writer "$ADDR" "$METRICS"
records() { curl -sf "http://$METRICS/metrics" | awk '/^permitgate_audit_records_total / { print $2 }'; }

for r in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        rm -rf "$DIR/audit-writer"
        "$bin" serve --config "$DIR/writer.toml" >"$DIR.log" 2>&1 &
        PID=$!
        ready "$METRICS" "$DIR.log"
        tid=$(grep -l '^audit-writer$' /proc/"$PID"/task/*/comm | cut -d/ -f5)
        "$LOAD" --demo "$DIR" --target "$ADDR" --connections "$CONNS" --duration 8 --warmup 1 >/dev/null &
        load=$!
        sleep 2
        before=$(awk '{ print $14 + $15 }' "/proc/$PID/task/$tid/stat")
        first=$(records)
        writes=$(perf stat -x, -e syscalls:sys_enter_write -t "$tid" -- sleep 5 2>&1 >/dev/null | cut -d, -f1)
        after=$(awk '{ print $14 + $15 }' "/proc/$PID/task/$tid/stat")
        last=$(records)
        wait "$load"
        stop
        awk -v b="$bin" -v r="$r" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
            -v n=$((last - first)) -v w="$writes" 'BEGIN {
                printf "round %d %s: %d records, writer CPU %.3f us per record, %d writes (%.1f records each)\n",
                    r, b, n, 1e6 * t / hz / n, w, n / w }'
    done
done
