#!/usr/bin/env bash
# Writes small seed corpora for the fuzz targets from a demo directory (made by
# `permitgate demo --dir DIR`): a real snapshot and delta of three residents, request
# bodies and a temporary-permit token from the demo samples, the demo manifest.
# Usage: fuzz/seeds.sh DEMO_DIR
set -euo pipefail
demo=${1:?usage: fuzz/seeds.sh DEMO_DIR}
here=$(cd "$(dirname "$0")" && pwd)
pg=${PERMITGATE:-$here/../target/release/permitgate}
corpus=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$corpus"/{document_number,request_body,sealed_token,snapshot_file,manifest,audit_line}

head -n 3 "$demo/export.jsonl" > "$work/export.jsonl"
keys=(--signing-key "$demo/keys/publisher.key" --hash-key "$demo/keys/hash.key")
"$pg" publish --input "$work/export.jsonl" --out "$work/repo" "${keys[@]}" >/dev/null
number=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["documents"][0]["number"])' "$work/export.jsonl")
printf '{"op":"status","number":"%s","status":"lost"}\n' "$number" > "$work/changes.jsonl"
"$pg" publish --changes "$work/changes.jsonl" --out "$work/repo" "${keys[@]}" >/dev/null
i=0
for f in "$work"/repo/objects/*; do
  cp "$f" "$corpus/snapshot_file/object-$i"; i=$((i + 1))
done
cp "$work/repo/manifest.json" "$corpus/manifest/envelope"
python3 - "$demo/samples.json" "$corpus" "$work/repo/manifest.json" <<'PY'
import json, sys
samples, corpus, manifest = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for s in samples:
    open(f"{corpus}/request_body/{s['name']}", "w").write(json.dumps(s["body"]))
    for k, v in s["body"].items():
        if isinstance(v, str) and v.startswith("PG"):
            open(f"{corpus}/sealed_token/{s['name']}", "w").write(v)
        elif isinstance(v, str):
            open(f"{corpus}/document_number/{s['name']}-{k}", "w").write(v)
bodies = [s["body"] for s in samples if "travel_permit" in s["body"]]
open(f"{corpus}/request_body/batch", "w").write(json.dumps({"checks": bodies}))
open(f"{corpus}/manifest/signed", "w").write(json.dumps(json.load(open(manifest))["signed"]))
PY
printf '{"seq":1,"time":"2026-11-25T00:00:00Z","request_id":"r1","partner":"bank","route":"link_check","outcome":"ok","documents":["00112233445566778899aabbccddeeff"],"prev":"%064d"' 0 > "$corpus/audit_line/record"
echo "seeds written under $corpus"
