#!/usr/bin/env bash
# POST /v1/orders and /v1/events on loopback with wrk against `rebuy serve` on a SQLite file:
# one record per request, then batches of 1,000, each for SECONDS; beside it, in the same run, GET /healthz
# (the HTTP stack's ceiling on this machine: no token, no database). After each run the stored
# orders are counted and compared with the 2xx answers: they may exceed them only by the
# requests wrk drops unanswered when it stops (at most one per connection).
# Installs wrk if missing (Debian). Usage: scripts/bench-api.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-20}
conns=${2:-32}
port=18025
if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet
bin=$PWD/target/release/rebuy
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
mkdir -p scenarios templates
printf 'http:\n  listen: 127.0.0.1:%s\n  max_connections: 512\n' "$port" > rebuy.yaml
python3 -c "
print('id,email,name')
for i in range(1, 10001): print(f'c{i},c{i}@example.jp,Customer {i}')" > customers.csv
export REBUY_UNSUBSCRIBE_SECRET=bench-unsubscribe-secret-0123456789
$bin import customers customers.csv >/dev/null
token=$($bin token create --scope ingest --name bench 2>/dev/null)
count() { python3 -c "import sqlite3; print(sqlite3.connect('rebuy.db').execute('select count(*) from $1').fetchone()[0])"; }
serve() {
  $bin serve --log-level warn &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "rebuy serve did not start" >&2; exit 1
}
peak() { grep VmHWM "/proc/$server/status" | awk '{print $2/1024 " MiB"}'; }
cpu() { awk '{print ($14+$15)/100 " s"}' "/proc/$server/stat"; }
serve
echo "== reference: GET /healthz, $conns connections, $secs s"
wrk -t2 -c"$conns" -d"$secs"s --latency "http://127.0.0.1:$port/healthz" | grep -E "Requests/sec|50%|99%"
run() {
  local label=$1 kind=$2 batch=$3 before after label_id=run$RANDOM
  before=$(count "$kind")
  echo "== $label: $conns connections, $secs s"
  wrk -t2 -c"$conns" -d"$secs"s --latency -s "$root/scripts/wrk/ingest.lua" \
    "http://127.0.0.1:$port" -- "$token" "$batch" 10000 "$label_id" "$kind" \
    | grep -E "Requests/sec|50%|99%|requests in|answered|errors|Non-2xx"
  after=$(count "$kind")
  echo "$kind stored: $((after - before))"
}
run "POST /v1/orders, one order per request" orders 1
run "POST /v1/orders, batches of 1,000" orders 1000
run "POST /v1/events, one event per request" events 1
run "POST /v1/events, batches of 1,000" events 1000
echo "server CPU time: $(cpu); peak memory (RSS): $(peak)"
kill $server; wait $server 2>/dev/null || true
# Like for like: rebuy's batches of orders and the SQLite floor, each on a fresh database.
echo "== like for like, each on a fresh database of the same customers"
fresh() { mkdir "$dir/$1" && cd "$dir/$1" && mkdir -p scenarios templates && cp ../rebuy.yaml . \
  && $bin import customers ../customers.csv >/dev/null; }
fresh api
token=$($bin token create --scope ingest --name bench 2>/dev/null)
serve
run "POST /v1/orders, batches of 1,000, fresh database" orders 1000
kill $server; wait $server 2>/dev/null || true
fresh floor
echo "== reference: the SQLite floor of the same (Python's sqlite3: same schema, pragmas and writes, no HTTP, JSON or validation), $secs s"
python3 "$root/scripts/sqlite-floor-orders.py" "$secs"
