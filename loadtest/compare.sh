#!/usr/bin/env bash
# permitgate against its practical ceiling, nginx with mTLS returning a static JSON body of
# the same size as a link-check answer, driven in turn (A B A B ...) with the same load by
# permitgate-load; then the targets that have no nginx counterpart (open loop, HTTP/2,
# batches, receipts). Prints medians and ratios, and CPU seconds per request of each
# server from /proc (the load generator shares the machine).
#
#   loadtest/compare.sh                      # ROUNDS=3 DURATION=10 CONNS=16 by default
#   ROUNDS=5 DURATION=20 loadtest/compare.sh
#   CASES="h1 audit" ROUNDS=5 DURATION=8 loadtest/compare.sh   # only some sections
#
# Like for like: the gateway as shipped writes its audit trail, so the nginx it is compared
# with writes a buffered access log (one line per request, `buffer=64k flush=1s`); the
# "audit" section also runs the gateway without its trail against nginx without a log, and
# reports what the trail costs. Sections (CASES): h1 audit handshake h2 open (default all).
#
# Installs nginx from Debian's packages when it is missing. Uses ports 18443 (permitgate),
# 19464 (its metrics), 18446/19465 (permitgate without the audit trail), 18444 (nginx with
# an access log) and 18445 (nginx without) on 127.0.0.1. Results: target/compare/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
HANDSHAKE_CONNS=${HANDSHAKE_CONNS:-8}
H2_CONNS=${H2_CONNS:-2}
H2_STREAMS=${H2_STREAMS:-32}
DIR=${DIR:-var/bench}
OUT=${OUT:-target/compare}
CASES=${CASES:-h1 audit handshake h2 open}
PG_ADDR=127.0.0.1:18443
PG_NOAUDIT_ADDR=127.0.0.1:18446
NGINX_ADDR=127.0.0.1:18444
NGINX_NOLOG_ADDR=127.0.0.1:18445
wants() { [[ " $CASES " == *" $1 "* ]]; }

mkdir -p "$OUT"
# A section left out this time must not be summarised from an earlier run's files.
rm -f "$OUT"/*.json "$OUT"/*.txt
OUT=$(cd "$OUT" && pwd)

if ! command -v nginx >/dev/null; then
    echo "== installing nginx"
    apt-get update -qq && apt-get install -y -qq nginx >/dev/null
fi

echo "== building (release)"
. loadtest/common.sh

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Written for the cost of writing them (about 1 GB a run each): not kept.
    rm -rf "$OUT/nginx-access.log" "$DIR/audit"
}
trap cleanup EXIT

echo "== starting permitgate (demo data in $DIR)"
rm -rf "$DIR/audit"
"$PG" demo --dir "$DIR" --listen "$PG_ADDR" --metrics-listen 127.0.0.1:19464 --verify-listen 127.0.0.1:0 >"$OUT/permitgate.log" 2>&1 &
PG_PID=$!
PIDS+=("$PG_PID")
ready 127.0.0.1:19464 "$OUT/permitgate.log"
DIR=$(cd "$DIR" && pwd)

# The same data and config without the audit trail, for the "audit" section.
PG_NOAUDIT_PID=
if wants audit; then
    python3 - "$DIR/gateway.toml" "$OUT/gateway-noaudit.toml" "$PG_NOAUDIT_ADDR" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"(?ms)^\[audit\]\n.*?(?=^\[)", "", text)
text = re.sub(r'(?m)^listen = ".*"$', f'listen = "{sys.argv[3]}"', text)
text = re.sub(r'(?m)^metrics_listen = ".*"$', 'metrics_listen = "127.0.0.1:19465"', text)
# Paths in the demo config are relative to its directory.
base = sys.argv[1].rsplit("/", 1)[0]
text = re.sub(r'(?m)^(cert|key|client_ca|repo|hash_key) = "(?!/)', lambda m: f'{m.group(1)} = "{base}/', text)
text = text.replace('publisher_keys = ["', f'publisher_keys = ["{base}/')
text = re.sub(r'\{ path = "(?!/)', f'{{ path = "{base}/', text)
assert "[audit]" not in text
open(sys.argv[2], "w").write(text)
EOF
    "$PG" serve --config "$OUT/gateway-noaudit.toml" >"$OUT/permitgate-noaudit.log" 2>&1 &
    PG_NOAUDIT_PID=$!
    PIDS+=("$PG_NOAUDIT_PID")
    ready 127.0.0.1:19465 "$OUT/permitgate-noaudit.log"
fi

# The static body: a real link-check answer, so both servers send the same bytes.
BODY=$(python3 - "$DIR" <<'EOF'
import json, sys
s = [s for s in json.load(open(sys.argv[1] + "/samples.json")) if s["name"] == "linked_pair"][0]
print(json.dumps(s["body"]))
EOF
)
ANSWER=$(curl -sf --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/partners/bank.crt" --key "$DIR/pki/partners/bank.key" \
    -H 'content-type: application/json' -d "$BODY" "https://localhost:${PG_ADDR##*:}/v1/link-checks")
echo "   answer body: ${#ANSWER} bytes"

echo "== starting nginx ($(nginx -v 2>&1 | sed 's/.*\///'))"
cat >"$OUT/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-$(nproc)};
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 8192; }
http {
    keepalive_requests 100000000;
    ssl_certificate $DIR/pki/server.crt;
    ssl_certificate_key $DIR/pki/server.key;
    ssl_client_certificate $DIR/pki/ca.crt;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    # As the gateway audits every answer: one line per request, buffered.
    server {
        listen $NGINX_ADDR ssl http2;
        access_log $OUT/nginx-access.log combined buffer=64k flush=1s;
        location / {
            default_type application/json;
            return 200 '$ANSWER';
        }
    }
    server {
        listen $NGINX_NOLOG_ADDR ssl http2;
        access_log off;
        location / {
            default_type application/json;
            return 200 '$ANSWER';
        }
    }
}
EOF
nginx -c "$OUT/nginx.conf" -p "$OUT" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
sleep 1
kill -0 "$NGINX_PID" || { echo "nginx did not start"; cat "$OUT/nginx-error.log"; exit 1; }

# CPU seconds (user + system) of a process and its children processes, from /proc.
cpu_ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}

# run NAME SERVER_PID ADDR [permitgate-load args...]: one measured run, JSON in $OUT.
run() {
    local name=$1 pid=$2 addr=$3
    shift 3
    local before after
    before=$(cpu_ticks "$pid")
    "$LOAD" --demo "$DIR" --target "$addr" --duration "$DURATION" --warmup 1 \
        --json "$OUT/$name.json" --fail-on-errors "$@" >"$OUT/$name.txt"
    after=$(cpu_ticks "$pid")
    python3 - "$OUT/$name.json" "$before" "$after" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
path, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
# CPU over the whole run (warm-up included) per measured request: an upper bound for both.
r["server_cpu_seconds"] = (after - before) / hz
r["server_cpu_us_per_request"] = 1e6 * r["server_cpu_seconds"] / max(r["requests"], 1)
json.dump(r, open(path, "w"), indent=1)
EOF
    printf '   %-28s %9.0f req/s  p99 %7.3f ms  cpu %6.1f us/req\n' "$name" \
        "$(python3 -c "import json;print(json.load(open('$OUT/$name.json'))['requests_per_second'])")" \
        "$(python3 -c "import json;print(json.load(open('$OUT/$name.json'))['latency']['p99_ms'])")" \
        "$(python3 -c "import json;print(json.load(open('$OUT/$name.json'))['server_cpu_us_per_request'])")"
}

if wants h1 || wants audit; then
    # One round runs every server of both sections in turn, so that the trail's cost (and
    # each ratio to nginx) compares runs a few seconds apart, not sections minutes apart:
    # this machine drifts by 10-20 % over minutes.
    wants h1 && echo "== A/B: keep-alive HTTP/1.1 link checks, $CONNS connections, closed loop (audit trail / access log on)"
    wants audit && echo "== A/B: the same without the audit trail / access log (in the same rounds)"
    for r in $(seq 1 "$ROUNDS"); do
        if wants h1; then
            run "nginx-h1-$r" "$NGINX_PID" "$NGINX_ADDR" --connections "$CONNS"
            run "permitgate-h1-$r" "$PG_PID" "$PG_ADDR" --connections "$CONNS"
        fi
        if wants audit; then
            run "nginx-nolog-h1-$r" "$NGINX_PID" "$NGINX_NOLOG_ADDR" --connections "$CONNS"
            run "permitgate-noaudit-h1-$r" "$PG_NOAUDIT_PID" "$PG_NOAUDIT_ADDR" --connections "$CONNS"
        fi
    done
fi

if wants handshake; then
    echo "== A/B: a new connection and full mTLS handshake per request, $HANDSHAKE_CONNS at a time"
    for r in $(seq 1 "$ROUNDS"); do
        run "nginx-handshake-$r" "$NGINX_PID" "$NGINX_ADDR" --protocol h1-new --connections "$HANDSHAKE_CONNS"
        run "permitgate-handshake-$r" "$PG_PID" "$PG_ADDR" --protocol h1-new --connections "$HANDSHAKE_CONNS"
    done
fi

if wants h2; then
    echo "== A/B: HTTP/2, $H2_CONNS connections x $H2_STREAMS streams"
    for r in $(seq 1 "$ROUNDS"); do
        run "nginx-h2-$r" "$NGINX_PID" "$NGINX_ADDR" --protocol h2 --connections "$H2_CONNS" --h2-streams "$H2_STREAMS"
        run "permitgate-h2-$r" "$PG_PID" "$PG_ADDR" --protocol h2 --connections "$H2_CONNS" --h2-streams "$H2_STREAMS"
    done
fi

if wants open && wants h1; then
    HALF=$(python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print(int(statistics.median(json.load(open(f"{out}/permitgate-h1-{r}.json"))["requests_per_second"] for r in range(1, rounds + 1)) / 2))
EOF
)
    echo "== open loop at half the gateway's measured maximum ($HALF req/s; nginx with its log at the same rate); permitgate alone: batches, receipts"
    for r in $(seq 1 "$ROUNDS"); do
        run "nginx-open-half-$r" "$NGINX_PID" "$NGINX_ADDR" --connections "$CONNS" --rate "$HALF"
        run "permitgate-open-half-$r" "$PG_PID" "$PG_ADDR" --connections "$CONNS" --rate "$HALF"
        run "permitgate-batch100-$r" "$PG_PID" "$PG_ADDR" --workload batch --batch-size 100 --connections 4
        run "permitgate-receipts-$r" "$PG_PID" "$PG_ADDR" --connections "$CONNS" --receipt-share 1
    done
fi

python3 - "$OUT" "$ROUNDS" <<'EOF' | tee "$OUT/summary.md"
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def have(name):
    return all(os.path.exists(f"{out}/{name}-{r}.json") for r in range(1, rounds + 1))
def runs(name):
    return [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, rounds + 1)]
def med(name, f):
    return statistics.median(f(x) for x in runs(name))
def per_round(num, den, f):
    """The median of num/den taken round by round: the drift both runs of a round share
    cancels out."""
    return statistics.median(f(a) / f(b) for a, b in zip(runs(num), runs(den)))
rps = lambda r: r["requests_per_second"]
cpu = lambda r: r["server_cpu_us_per_request"]
items = lambda r: r["items_per_second"]
print(f"medians of {rounds} rounds each; ratio of the medians, and the median of the ratios round by round\n")
print("| case | nginx | permitgate | ratio | ratio per round | target |")
print("|---|---|---|---|---|---|")
for label, ncase, pcase, f, target in [
    ("keep-alive HTTP/1.1, audit trail / access log on, req/s", "nginx-h1", "permitgate-h1", rps, ">= 1.0x"),
    ("keep-alive HTTP/1.1, audit trail / access log on, server CPU us/req", "nginx-h1", "permitgate-h1", cpu, "<= 1.0x"),
    ("keep-alive HTTP/1.1, no trail / no log, req/s", "nginx-nolog-h1", "permitgate-noaudit-h1", rps, "(reference)"),
    ("keep-alive HTTP/1.1, no trail / no log, server CPU us/req", "nginx-nolog-h1", "permitgate-noaudit-h1", cpu, "(reference)"),
    ("new connection + full handshake, req/s", "nginx-handshake", "permitgate-handshake", rps, ">= 1.0x"),
    ("HTTP/2, req/s", "nginx-h2", "permitgate-h2", rps, "(reference)"),
]:
    if have(ncase) and have(pcase):
        n, p = med(ncase, f), med(pcase, f)
        print(f"| {label} | {n:.1f} | {p:.1f} | {p / n:.2f}x | {per_round(pcase, ncase, f):.2f}x | {target} |")
print()
print("| permitgate target | measured | target |")
print("|---|---|---|")
if have("permitgate-h1") and have("permitgate-noaudit-h1"):
    on, off = med("permitgate-h1", rps), med("permitgate-noaudit-h1", rps)
    con, coff = med("permitgate-h1", cpu), med("permitgate-noaudit-h1", cpu)
    rr = 1 - per_round("permitgate-h1", "permitgate-noaudit-h1", rps)
    rc = per_round("permitgate-h1", "permitgate-noaudit-h1", cpu) - 1
    print(f"| audit trail cost: throughput | {1 - on / off:.1%} ({on:.0f} vs {off:.0f} req/s); per round {rr:.1%} | <= 5% |")
    print(f"| audit trail cost: server CPU per request | {con / coff - 1:+.1%} ({con:.1f} vs {coff:.1f} us); per round {rc:+.1%} | |")
if have("permitgate-open-half"):
    # The target is every round, so the worst round is printed beside the median, and
    # nginx at the same rate (same run) shows what the machine itself adds.
    for label, q, target in [("p99", "p99_ms", "<= 1 ms"), ("p99.9", "p999_ms", "<= 5 ms")]:
        pg = [x["latency"][q] for x in runs("permitgate-open-half")]
        base = ""
        if have("nginx-open-half"):
            ng = [x["latency"][q] for x in runs("nginx-open-half")]
            base = f"; nginx {statistics.median(ng):.3f} ms (worst {max(ng):.3f})"
        print(f"| open loop at half the max: {label} | {statistics.median(pg):.3f} ms (worst round {max(pg):.3f}){base} | {target} in every round |")
if have("permitgate-h1") and have("permitgate-h2"):
    h1, h2 = med("permitgate-h1", rps), med("permitgate-h2", rps)
    print(f"| HTTP/2 vs HTTP/1.1 throughput | {h2 / h1:.2f}x ({h2:.0f} vs {h1:.0f} req/s) | (reference) |")
if have("permitgate-h1") and have("permitgate-batch100"):
    single, batch = med("permitgate-h1", items), med("permitgate-batch100", items)
    print(f"| batch of 100: checks/s vs single checks/s | {batch / single:.1f}x ({batch:.0f} vs {single:.0f}) | >= 20x |")
if have("permitgate-h1") and have("permitgate-receipts"):
    rec, h1 = med("permitgate-receipts", rps), med("permitgate-h1", rps)
    print(f"| receipts on every link check: req/s | {rec:.0f} ({rec / h1:.2f}x of without) | signing-bound |")
EOF
