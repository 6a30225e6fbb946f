#!/usr/bin/env bash
# Peak memory and time of `permitgate publish --input` for an export of N documents.
#
#   loadtest/publish_memory.sh 10000000 [100000000 ...]
#
# The export is generated on the fly into a FIFO (a 100M-document export is about 9 GB):
# one person per line with one travel permit each (H00000000, H00000001, ...), so there
# are as many persons as documents, the most the person check has to spill. The publisher
# reads it as it would a file. Reported: maximum resident set size (GNU time) and elapsed
# time, for this build and, with OLD=path/to/permitgate, for another one in the same run.
# Needs free disk of about 1.6 x 32 bytes x N (the spill and the snapshot).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { echo "usage: $0 DOCUMENTS [DOCUMENTS ...]"; exit 2; }
. loadtest/common.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/permitgate-publish.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$PG" keys generate --out "$WORK/keys" >/dev/null

generate() { # N: the export, one line per person
    python3 - "$1" <<'PY'
import sys
out = sys.stdout
n = int(sys.argv[1])
step = 10000
for start in range(0, n, step):
    out.write("".join(
        f'{{"person":"p{i}","documents":[{{"number":"H{i:08d}","status":"valid","valid_until":"2031-01-01"}}]}}\n'
        for i in range(start, min(start + step, n))))
PY
}

measure() { # LABEL BINARY N
    local label=$1 bin=$2 n=$3
    rm -rf "$WORK/repo" "$WORK/fifo"
    mkfifo "$WORK/fifo"
    generate "$n" >"$WORK/fifo" &
    local gen=$!
    /usr/bin/time -v "$bin" publish --input "$WORK/fifo" --out "$WORK/repo" \
        --signing-key "$WORK/keys/publisher.key" --hash-key "$WORK/keys/hash.key" \
        >"$WORK/out" 2>"$WORK/time" || { cat "$WORK/out" "$WORK/time"; kill "$gen" 2>/dev/null; exit 1; }
    wait "$gen"
    local kb elapsed
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time")
    elapsed=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time")
    printf '| %s | %d | %.1f MiB | %.1f B | %s |\n' "$label" "$n" "$(echo "$kb / 1024" | bc -l)" \
        "$(echo "$kb * 1024 / $n" | bc -l)" "$elapsed"
}

echo "| build | documents | peak RSS | per document | elapsed (generator on the same cores) |"
echo "|---|---|---|---|---|"
for n in "$@"; do
    if [ -n "${OLD:-}" ]; then measure "OLD ($OLD)" "$OLD" "$n"; fi
    measure "this build" "$PG" "$n"
done
