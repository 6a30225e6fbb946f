# Helpers the loadtest scripts share; sourced (`. loadtest/common.sh`, from the repository's
# root), not run. Sourcing builds the release binaries: PG (the gateway; set PG to measure
# another build) and LOAD (the load generator).

cargo build --release -q -p permitgate -p permitgate-load
PG=${PG:-target/release/permitgate}
LOAD=target/release/permitgate-load

# The gateway (or relay) a script started, and how it is stopped.
PID=
stop() { if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }

# ready METRICS_ADDR LOG: waits up to 60 s for /readyz; else prints LOG and exits.
ready() {
    for _ in $(seq 1 600); do curl -sf "http://$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "the gateway at $1 did not become ready"; cat "$2"; exit 1
}

# demo_once DIR ADDR METRICS_ADDR LOG: the demo's data in DIR unless it is there already
# (the demo command serves; it is stopped as soon as it is ready).
demo_once() {
    [ -f "$1/gateway.toml" ] && return 0
    "$PG" demo --dir "$1" --listen "$2" --metrics-listen "$3" --verify-listen 127.0.0.1:0 >"$4" 2>&1 &
    PID=$!
    ready "$3" "$4"
    stop
}

# field JSON EXPR: EXPR (Python, over the report `r`) of a JSON report.
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"r": r}))' "$@"; }

# demo_config DIR NAME ADDR METRICS_ADDR [APPENDIX]: DIR/NAME.toml, the demo's config
# (DIR/gateway.toml) listening on ADDR and METRICS_ADDR, with its audit trail in
# DIR/audit-NAME, and APPENDIX (TOML tables) added at its end.
demo_config() {
    python3 - "$@" <<'PY'
import re, sys
d, name, addr, metrics = sys.argv[1:5]
appendix = sys.argv[5].rstrip("\n") + "\n" if len(sys.argv) > 5 else ""
t = open(f"{d}/gateway.toml").read()
t = re.sub(r'^listen = ".*"$', f'listen = "{addr}"', t, count=1, flags=re.M)
t = re.sub(r'^metrics_listen = ".*"$', f'metrics_listen = "{metrics}"', t, count=1, flags=re.M)
t = t.replace('dir = "audit"', f'dir = "audit-{name}"')
open(f"{d}/{name}.toml", "w").write(t + appendix)
PY
}
