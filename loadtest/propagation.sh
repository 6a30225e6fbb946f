#!/usr/bin/env bash
# Propagation of a publication: publish -> origin -> relay -> follower, default settings.
#
#   loadtest/propagation.sh            # PUBLICATIONS=20 ROUNDS=1 by default
#
# Three gateways as shipped (audit on), release build, on loopback: the origin serves the
# demo repository (`snapshot.repo`: it watches the directory), a relay follows the origin
# over mTLS (`[replication]`, default poll interval), a follower follows the relay the same
# way. `permitgate-load --propagation N` publishes N status changes into the origin's
# repository and times each until the follower answers with its version (src/propagation.rs
# in loadtest). The relay and the follower start from empty state directories each round.
# Ports 18743-18745 (partners) and 19765-19767 (metrics). Results: target/propagation/.
set -euo pipefail
cd "$(dirname "$0")/.."

PUBLICATIONS=${PUBLICATIONS:-20}
ROUNDS=${ROUNDS:-1}
DIR=${DIR:-var/bench-propagation}
OUT=${OUT:-target/propagation}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)


. loadtest/common.sh
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
demo_once "$DIR" 127.0.0.1:18743 127.0.0.1:19765 "$OUT/demo.log"
DIR=$(cd "$DIR" && pwd)

# follows NAME SOURCE_PORT: a [replication] table following the gateway on SOURCE_PORT as
# the demo's `relay` partner, with NAME's own state directory.
follows() {
    printf '\n[replication]\nsource = "https://localhost:%s/v1/replication"\nstate_dir = "state-%s"\nca = "pki/ca.crt"\nclient_cert = "pki/partners/relay.crt"\nclient_key = "pki/partners/relay.key"\n' "$2" "$1"
}
demo_config "$DIR" origin 127.0.0.1:18743 127.0.0.1:19765
demo_config "$DIR" relay 127.0.0.1:18744 127.0.0.1:19766 "$(follows relay 18743)"
demo_config "$DIR" follower 127.0.0.1:18745 127.0.0.1:19767 "$(follows follower 18744)"

: >"$OUT/summary.txt"
for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$DIR"/audit-* "$DIR"/state-*
    for hop in origin:19765 relay:19766 follower:19767; do
        name=${hop%%:*}
        "$PG" serve --config "$DIR/$name.toml" >"$OUT/$name.log" 2>&1 &
        PIDS+=($!)
        ready "127.0.0.1:${hop##*:}" "$OUT/$name.log"
    done
    # Every hop in its long-poll before the first publication.
    sleep 2
    "$LOAD" --demo "$DIR" --target 127.0.0.1:18745 --propagation "$PUBLICATIONS" \
        --fail-on-errors --json "$OUT/round-$round.json" | tee -a "$OUT/summary.txt"
    stop_all
done
rm -rf "$DIR"/audit-* "$DIR"/state-*
