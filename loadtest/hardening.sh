#!/usr/bin/env bash
# Overload and noisy-partner measurements (the hardening issue), with permitgate-load.
#
#   loadtest/hardening.sh            # ROUNDS=3 DURATION=10 by default
#
# Overload: the gateway pinned to CPU 0 (worker_threads follow the affinity), the load
# generator to CPU 1, batches of 100 checks (server-heavy, cheap to send) over 1024
# connections, so that the generator's own queue does not hide the server's. First the
# sustainable rate R (closed loop), then open loop at R/2 (baseline) and at 3R with the
# default limits: p99 of the admitted requests and the share shed. Latency counts from
# each request's ideal send time (coordinated omission corrected). SERVER_EXTRA adds
# [server] settings (e.g. 'max_queue_delay_ms = 0' to see the gateway without lag
# shedding).
#
# Noisy partner: rail-gate sends document-status checks at a fixed open-loop rate while
# bank floods link checks in a closed loop; three cases: rail-gate alone, bank flooding
# without a limit, bank flooding with rate_limit = 2000/s. Reported: rail-gate's p50/p99
# and errors, bank's share of 429.
#
# Isolation (the isolation issue): rail-gate sends document-status checks at VICTIM_RATE
# (open loop) while another partner attacks with `permitgate-load --hostile`: 1100
# HTTP/1.1 connections holding unfinished 60 000-byte bodies (slow-body-h1), 9 HTTP/2
# connections x 128 such streams (slow-body-h2), 1100 connections dribbling a byte a
# second (dribble), and 8 x 128 held replication long-polls by relay (long-poll). The
# gateway as shipped (audit on), pinned to CPU 0; both generators on CPU 1. The attack
# starts 3 s before the victim's run and outlasts it. Reported: rail-gate's refusals
# (non-200) and p50/p99/p99.9, and what the attacker got. PG=path/to/permitgate measures
# another build (e.g. an older commit) with the same generator.
#
# PARTS="overload", "noisy" or "isolation" runs one part only.
# Ports 18643 (gateway) and 19665 (metrics) on 127.0.0.1. Results: target/hardening/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
DIR=${DIR:-var/bench-hardening}
OUT=${OUT:-target/hardening}
ADDR=127.0.0.1:18643
METRICS=127.0.0.1:19665
VICTIM_RATE=${VICTIM_RATE:-2000}
mkdir -p "$OUT"
# 1100 attacking connections, on both sides of loopback.
ulimit -n "$(ulimit -Hn)"
OUT=$(cd "$OUT" && pwd)


. loadtest/common.sh
trap stop EXIT
demo_once "$DIR" "$ADDR" "$METRICS" "$OUT/demo.log"
DIR=$(cd "$DIR" && pwd)

# serve NAME CPUS SERVER_EXTRA BANK_EXTRA: a config from the demo's, then the gateway.
serve() {
    local name=$1 cpus=$2 server_extra=$3 bank_extra=$4
    python3 - "$DIR/gateway.toml" "$DIR/$name.toml" "$server_extra" "$bank_extra" <<'PY'
import sys
src, dst, server_extra, bank_extra = sys.argv[1:]
t = open(src).read()
t = t.replace("[tls]", server_extra.replace("\\n", "\n") + "\n[tls]", 1)
# bank is in the partner registry: this config gets a copy with bank_extra in it.
registry = src.replace("gateway.toml", "pki/partners.toml")
r = open(registry).read().replace('id = "bank"\n', 'id = "bank"\n' + bank_extra + "\n", 1)
copy = dst.replace(".toml", "-partners.toml")
open(copy, "w").write(r)
t = t.replace('partners_file = "pki/partners.toml"', 'partners_file = "%s"' % copy, 1)
open(dst, "w").write(t)
PY
    rm -rf "$DIR/audit"
    taskset -c "$cpus" "$PG" serve --config "$DIR/$name.toml" >"$OUT/$name.log" 2>&1 &
    PID=$!
    ready "$METRICS" "$OUT/$name.log"
}

load() { # CPUS JSON ARGS... (LOAD_DURATION overrides DURATION)
    local cpus=$1 json=$2; shift 2
    taskset -c "$cpus" "$LOAD" --demo "$DIR" --target "$ADDR" --warmup 1 \
        --duration "${LOAD_DURATION:-$DURATION}" --json "$json" "$@" >/dev/null
}


median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

PARTS=${PARTS:-overload noisy isolation}

if [[ " $PARTS " == *" overload "* ]]; then
echo "== overload (gateway on CPU 0, generator on CPU 1, batches of 100; server extra: ${SERVER_EXTRA:-none})"
: >"$OUT/overload.txt"
for round in $(seq 1 "$ROUNDS"); do
    serve overload 0 "${SERVER_EXTRA:-}" ''
    # 1024 keep-alive connections: enough outstanding requests that the generator's own
    # backlog does not hide the server's queue (with 256, at most 256 requests can wait
    # at the server, about 30 ms of work, and the rest waits in the generator).
    open=(--connections 1024 --workload batch --batch-size 100)
    load 1 "$OUT/closed-$round.json" --connections 16 --workload batch --batch-size 100
    R=$(field "$OUT/closed-$round.json" 'round(r["requests_per_second"])')
    load 1 "$OUT/half-$round.json" "${open[@]}" --rate $((R / 2))
    load 1 "$OUT/triple-$round.json" "${open[@]}" --rate $((R * 3))
    stop
    echo "$round $R \
$(field "$OUT/half-$round.json" 'r["latency"]["p99_ms"]') \
$(field "$OUT/triple-$round.json" 'r["requests_per_second"]') \
$(field "$OUT/triple-$round.json" 'r["latency_expected"]["p99_ms"]') \
$(field "$OUT/triple-$round.json" 'round(r["statuses"].get("503", 0) / max(r["requests"], 1), 3)') \
$(field "$OUT/triple-$round.json" 'r["latency_expected_sent"]["p99_ms"]') \
$(field "$OUT/half-$round.json" 'r["latency"]["p999_ms"]')" | tee -a "$OUT/overload.txt"
done
echo "(round, sustainable R batches/s, p99 ms at R/2, offered req/s at 3R, p99 ms of admitted at 3R from due time, share shed at 3R, p99 ms of admitted at 3R from send, p99.9 ms at R/2)"
for c in 2 3 4 5 6 7 8; do printf '%s ' "$(awk -v c=$c '{print $c}' "$OUT/overload.txt" | median)"; done; echo "  <- medians"

fi

if [[ " $PARTS " == *" noisy "* ]]; then
echo "== noisy partner (gateway on both CPUs; rail-gate at $VICTIM_RATE status checks/s)"
: >"$OUT/noisy.txt"
for round in $(seq 1 "$ROUNDS"); do
    for case in alone flood limited; do
        bank_extra=''
        [ "$case" = limited ] && bank_extra='rate_limit = { per_second = 2000, burst = 2000 }'
        serve "noisy-$case" 0,1 '' "$bank_extra"
        if [ "$case" != alone ]; then
            LOAD_DURATION=$((DURATION + 2)) load 0,1 "$OUT/bank-$case-$round.json" --partner bank --workload link --connections 16 &
            FLOOD=$!
            sleep 0.5
        fi
        load 0,1 "$OUT/gate-$case-$round.json" --partner rail-gate --workload status --connections 16 --rate "$VICTIM_RATE"
        [ "$case" != alone ] && wait "$FLOOD"
        stop
        echo "$round $case \
$(field "$OUT/gate-$case-$round.json" 'r["latency"]["p50_ms"]') \
$(field "$OUT/gate-$case-$round.json" 'r["latency"]["p99_ms"]') \
$(field "$OUT/gate-$case-$round.json" 'r["errors"]') \
$( [ "$case" = alone ] && echo "- -" || echo "$(field "$OUT/bank-$case-$round.json" 'round(r["requests_per_second"])') $(field "$OUT/bank-$case-$round.json" 'r["statuses"].get("429", 0) / max(r["requests"], 1)')")" | tee -a "$OUT/noisy.txt"
    done
done
echo "(round, case, rail-gate p50 ms, p99 ms, errors, bank req/s, bank share 429)"
for case in alone flood limited; do
    printf '%s: p50 %s p99 %s\n' "$case" \
        "$(awk -v k=$case '$2==k {print $3}' "$OUT/noisy.txt" | median)" \
        "$(awk -v k=$case '$2==k {print $4}' "$OUT/noisy.txt" | median)"
done
fi

if [[ " $PARTS " == *" isolation "* ]]; then
echo "== isolation (gateway on CPU 0 with its audit trail; rail-gate at $VICTIM_RATE status checks/s and the attacker on CPU 1)"
: >"$OUT/isolation.txt"
attack_args() {
    case $1 in
        slow-body-h1) echo "--partner bank --hostile slow-body-h1 --connections 1100" ;;
        slow-body-h2) echo "--partner bank --hostile slow-body-h2 --connections 9 --h2-streams 128" ;;
        dribble) echo "--partner bank --hostile dribble --connections 1100" ;;
        long-poll) echo "--partner relay --hostile long-poll --connections 8 --h2-streams 128" ;;
    esac
}
for round in $(seq 1 "$ROUNDS"); do
    for case in alone slow-body-h1 slow-body-h2 dribble long-poll; do
        serve "isolation-$case" 0 '' ''
        if [ "$case" != alone ]; then
            # shellcheck disable=SC2046
            taskset -c 1 "$LOAD" --demo "$DIR" --target "$ADDR" --duration $((DURATION + 5)) \
                --json "$OUT/attack-$case-$round.json" $(attack_args "$case") >"$OUT/attack-$case-$round.txt" 2>&1 &
            ATTACK=$!
            sleep 3
        fi
        load 1 "$OUT/victim-$case-$round.json" --partner rail-gate --workload status --connections 16 --rate "$VICTIM_RATE"
        [ "$case" != alone ] && wait "$ATTACK"
        stop
        echo "$round $case \
$(field "$OUT/victim-$case-$round.json" 'r["requests"] - r["statuses"].get("200", 0)') \
$(field "$OUT/victim-$case-$round.json" 'r["latency"]["p50_ms"]') \
$(field "$OUT/victim-$case-$round.json" 'r["latency"]["p99_ms"]') \
$(field "$OUT/victim-$case-$round.json" 'r["latency"]["p999_ms"]') \
$( [ "$case" = alone ] && echo "-" || field "$OUT/attack-$case-$round.json" '" ".join(f"{k}:{v}" for k, v in r["statuses"].items()) or "none"')" | tee -a "$OUT/isolation.txt"
    done
done
echo "(round, case, rail-gate refusals, p50 ms, p99 ms, p99.9 ms, attacker's answers by status)"
for case in alone slow-body-h1 slow-body-h2 dribble long-poll; do
    printf '%s: refusals %s p50 %s p99 %s p99.9 %s\n' "$case" \
        "$(awk -v k=$case '$2==k {print $3}' "$OUT/isolation.txt" | median)" \
        "$(awk -v k=$case '$2==k {print $4}' "$OUT/isolation.txt" | median)" \
        "$(awk -v k=$case '$2==k {print $5}' "$OUT/isolation.txt" | median)" \
        "$(awk -v k=$case '$2==k {print $6}' "$OUT/isolation.txt" | median)"
done
fi
