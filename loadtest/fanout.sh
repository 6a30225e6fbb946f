#!/usr/bin/env bash
# Relay fan-out (issue 16, target 5): one relay, FOLLOWERS simulated followers holding
# long-polls over mTLS, partner traffic at half the sustainable rate.
#
#   loadtest/fanout.sh            # FOLLOWERS=1000 PUBLICATIONS=20 DOWNLOADS=100
#
# The relay is a gateway as shipped (audit on) serving the repository it holds. Steps:
# 1. the sustainable rate R of link checks (closed loop, 16 connections, partner bank);
# 2. bank at R/2 (open loop) alone: the baseline p99;
# 3. bank at R/2 again while FOLLOWERS followers (partner relay, one HTTP/1.1 connection
#    each, as a following gateway holds) long-poll and PUBLICATIONS status changes are
#    published 1 s apart: each follower's time from the publication returning to holding
#    the new manifest and its delta (`permitgate-load --propagation --followers`). On the
#    demo's data (100,000 residents): the publisher runs on these cores too, and a change
#    to 10M documents would have it read the whole base each time;
# 4. the relay restarted on BIG_DIR's 10M-document repository (320 MB base; made by
#    loadtest/swap.sh, skipped without it): DOWNLOADS followers download the base at once;
#    the relay's resident memory sampled every 50 ms (idle before, peak during).
# PG=path/to/permitgate measures another build. Ports 18943 (relay) and 19965 (metrics).
# Results: target/fanout/ (OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."

FOLLOWERS=${FOLLOWERS:-1000}
PUBLICATIONS=${PUBLICATIONS:-20}
DOWNLOADS=${DOWNLOADS:-100}
DIR=${DIR:-var/bench-fanout}
BIG_DIR=${BIG_DIR:-var/bench-swap}
OUT=${OUT:-target/fanout}
ADDR=127.0.0.1:18943
METRICS=127.0.0.1:19965
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# A connection per follower, on both sides of loopback.
ulimit -n "$(ulimit -Hn)"


. loadtest/common.sh
trap stop EXIT
demo_once "$DIR" "$ADDR" "$METRICS" "$OUT/demo.log"
DIR=$(cd "$DIR" && pwd)
# A fresh base with no delta chain: 20 publications then stay deltas (a compaction would
# send every follower the whole base instead).
"$PG" publish --input "$DIR/export.jsonl" --out "$DIR/repo" \
    --signing-key "$DIR/keys/publisher.key" --hash-key "$DIR/keys/hash.key" >/dev/null

relay() { # REPO_DIR: the relay on that directory's config, ports moved
    local dir=$1
    demo_config "$dir" fanout "$ADDR" "$METRICS"
    rm -rf "$dir/audit-fanout"
    "$PG" serve --config "$dir/fanout.toml" >"$OUT/relay.log" 2>&1 &
    PID=$!
    ready "$METRICS" "$OUT/relay.log"
}
relay "$DIR"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }

load() { # JSON ARGS...
    local json=$1; shift
    "$LOAD" --demo "$DIR" --target "$ADDR" --warmup 1 --json "$json" "$@" >/dev/null
}

load "$OUT/max.json" --duration 8 --connections 16
HALF=$(field "$OUT/max.json" 'int(r["requests_per_second"] / 2)')
echo "== sustainable rate $(field "$OUT/max.json" 'round(r["requests_per_second"])') req/s; partner traffic at $HALF req/s"
WINDOW=$((PUBLICATIONS + 8))
load "$OUT/partner-alone.json" --duration "$WINDOW" --connections 16 --rate "$HALF"

echo "== $FOLLOWERS followers, $PUBLICATIONS publications, partner traffic alongside"
rss_before=$(rss_kb)
# The fleet connects first, and each follower downloads the base it does not hold yet
# (1,000 handshakes and 1,000 downloads: storms of their own, as target 2 found of the
# partner generator's handshakes); then it holds still for 3 s while the partner traffic
# starts and warms up, so that the publications fall inside the partner's measured time.
rm -f "$OUT/fleet.log"
"$LOAD" --demo "$DIR" --target "$ADDR" --partner relay --propagation "$PUBLICATIONS" \
    --followers "$FOLLOWERS" --settle-ms 3000 --gap-ms 1000 --timeout-ms 5000 \
    --json "$OUT/followers.json" >"$OUT/followers.txt" 2>"$OUT/fleet.log" &
fleet=$!
for _ in $(seq 1 1200); do
    grep -q "hold the manifest" "$OUT/fleet.log" && break
    kill -0 "$fleet" 2>/dev/null || { cat "$OUT/fleet.log"; exit 1; }
    sleep 0.1
done
load "$OUT/partner-with-followers.json" --duration "$WINDOW" --connections 16 --rate "$HALF" &
partner=$!
wait "$fleet"
cat "$OUT/followers.txt"
rss_followers=$(rss_kb)
wait "$partner"

stop
rm -rf "$DIR/audit-fanout"

rss_idle=0 peak=0
if [ -f "$BIG_DIR/export-big.jsonl" ]; then
    BIG_DIR=$(cd "$BIG_DIR" && pwd)
    relay "$BIG_DIR"
    echo "== $DOWNLOADS followers download the base of $BIG_DIR at once"
    rss_idle=$(rss_kb)
    ( while :; do rss_kb; sleep 0.05; done ) >"$OUT/rss-download.txt" 2>/dev/null &
    sampler=$!
    "$LOAD" --demo "$BIG_DIR" --target "$ADDR" --partner relay --download-base "$DOWNLOADS" \
        --fail-on-errors --json "$OUT/downloads.json" >/dev/null
    kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
    peak=$(sort -n "$OUT/rss-download.txt" | tail -n 1)
    stop
    rm -rf "$BIG_DIR/audit-fanout"
else
    echo "== no $BIG_DIR/export-big.jsonl (run loadtest/swap.sh once): downloads skipped"
    echo '{"downloads": 0, "failed": 0, "bytes_each": 0, "seconds": []}' >"$OUT/downloads.json"
fi

python3 - "$OUT" "$FOLLOWERS" "$rss_before" "$rss_followers" "$rss_idle" "$peak" <<'PY' | tee "$OUT/summary.md"
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
before, with_followers, idle, peak = (int(x) for x in sys.argv[3:])
alone = json.load(open(f"{out}/partner-alone.json"))
busy = json.load(open(f"{out}/partner-with-followers.json"))
f = json.load(open(f"{out}/followers.json"))
d = json.load(open(f"{out}/downloads.json"))
within = sum(1 for s in f["samples_ms"] if s <= 1000)
total = len(f["samples_ms"]) + f["lost"]
print("| measurement | value |")
print("|---|---|")
print(f"| partner p99 alone / with {n} followers | {alone['latency']['p99_ms']:.3f} ms / {busy['latency']['p99_ms']:.3f} ms ({busy['latency']['p99_ms'] / alone['latency']['p99_ms']:.2f}x) |")
print(f"| partner errors alone / with followers | {alone['errors']} / {busy['errors']} |")
print(f"| follower sightings within 1 s | {within} of {total} ({f['lost']} lost) |")
print(f"| time to a follower, median / p90 / p99 / max | {f['median_ms']:.1f} / {f['p90_ms']:.1f} / {f['p99_ms']:.1f} / {f['max_ms']:.1f} ms |")
print(f"| slowest follower per publication, max | {max(f['slowest_ms']):.1f} ms |")
print(f"| relay RSS before followers / after {len(f['publish_ms'])} publications | {before / 1024:.0f} / {with_followers / 1024:.0f} MiB |")
print(f"| {d['downloads']} downloads of {d['bytes_each'] / 1e6:.0f} MB at once: failed, slowest | {d['failed']}, {d['seconds'][-1] if d['seconds'] else float('nan'):.1f} s |")
print(f"| relay RSS idle / peak during the downloads | {idle / 1024:.0f} / {peak / 1024:.0f} MiB (+{(peak - idle) / 1024:.0f} MiB) |")
PY
