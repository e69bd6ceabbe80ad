#!/usr/bin/env bash
# The metrics benchmark: a shop generated as a BG/NBD process (examples/gen_bgnbd.rs, fixed
# seed), imported into SQLite, refreshed by rebuy (`rebuy refresh`, timed per phase, peak
# memory), then the same transactions through the reference library (lifetimes, in a virtualenv
# this script creates). Usage: scripts/bench-metrics.sh [CUSTOMERS] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
dir=${2:-target/bench-metrics}
end=2025-12-31
mkdir -p "$dir"
cargo build --release --quiet
cargo run --release --quiet --example gen_bgnbd -- "$dir" "$n" 7
db="$dir/rebuy.db"
rm -f "$db" "$db"-*
printf 'database: %s\n' "$db" > "$dir/rebuy.yaml"
rebuy="target/release/rebuy --config $dir/rebuy.yaml"
echo "== import (not part of the targets)"
/usr/bin/time -f "customers: %e s, %M KB peak" $rebuy import customers "$dir/customers.csv" --no-progress > /dev/null
/usr/bin/time -f "orders: %e s, %M KB peak" $rebuy import orders "$dir/orders.csv" --no-progress > /dev/null
echo "== rebuy refresh (full: read, summaries, RFM, both fits, predictions, write)"
/usr/bin/time -f "refresh: %e s wall, %M KB peak" $rebuy refresh --as-of "$end" --no-progress --format json > "$dir/refresh.json"
python3 -c "import json; d=json.load(open('$dir/refresh.json')); print(json.dumps({k: d[k] for k in ('customers','orders','timings','bgnbd','gamma_gamma')}, indent=2))"
echo "== reference: lifetimes in a virtualenv"
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet lifetimes
fi
"$dir/venv/bin/python" scripts/lifetimes_reference.py "$dir/transactions.csv" "$end"
