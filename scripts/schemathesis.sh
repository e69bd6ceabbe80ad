#!/usr/bin/env bash
# Runs Schemathesis (from PyPI, pinned) against a live `rebuy run` and its /openapi.json: every
# documented route fuzzed with generated requests, failing on any 5xx, any status the document
# does not list, and any response that does not match its schema or content type.
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES]   (default 40 per operation)
# It builds the debug binary (shared with `cargo test`) and keeps a virtualenv in
# target/schemathesis-venv, so a second run starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
examples=${1:-40}
version=4.32.5

venv=target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet
bin=$root/target/debug/rebuy
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/rebuy.yaml" <<YAML
database: $work/rebuy.db
scenarios_dir: $root/scenarios
templates_dir: $root/templates
http:
  listen: 127.0.0.1:0
tracking:
  base_url: http://127.0.0.1/track
delivery:
  transport: file
  file_dir: $work/outbox
YAML
cd "$work"
"$bin" init >/dev/null
# Some data, so that lookups find something as well as nothing.
"$bin" import customers "$root/tests/fixtures/customers.jsonl" >/dev/null
"$bin" import orders "$root/tests/fixtures/orders.jsonl" >/dev/null
token=$("$bin" token create --scope admin --name schemathesis)
REBUY_SHOPIFY_SECRET=schemathesis-shopify-secret "$bin" run --log-format json 2> "$work/log" &
pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(python3 - "$work/log" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        f = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if f.get("message") == "serving HTTP":
        print(f["addr"])
        break
PY
)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; echo "rebuy run stopped" >&2; exit 1; }
  sleep 0.2
done
[ -n "$addr" ] || { cat "$work/log"; echo "rebuy run did not start" >&2; exit 1; }

"$root/$venv/bin/schemathesis" run "http://$addr/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "$examples" \
  --seed 1 \
  --no-color
if grep -q '"level":"ERROR"' "$work/log"; then
  grep '"level":"ERROR"' "$work/log" | head -20
  echo "rebuy logged errors while fuzzed" >&2
  exit 1
fi
echo "schemathesis: no 5xx, every response as documented"
