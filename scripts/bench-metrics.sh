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
# Absolute: paths in a config file are read relative to the file.
dir=$(realpath "$dir")
cargo build --release --quiet
cargo run --release --quiet --example gen_bgnbd -- "$dir" "$n" 7
db="$dir/rebuy.db"
rm -f "$db" "$db"-*
mkdir -p "$dir/scenarios"
cp scenarios/segments.yaml "$dir/scenarios/"   # the 13 shipped segments, evaluated by every refresh
printf 'database: %s\nscenarios_dir: %s\n' "$db" "$dir/scenarios" > "$dir/rebuy.yaml"
rebuy="target/release/rebuy --config $dir/rebuy.yaml"
echo "== import (not part of the targets)"
/usr/bin/time -f "customers: %e s, %M KB peak" $rebuy import customers "$dir/customers.csv" --no-progress > /dev/null
/usr/bin/time -f "orders: %e s, %M KB peak" $rebuy import orders "$dir/orders.csv" --no-progress > /dev/null
echo "== rebuy refresh (full: read, summaries, RFM, both fits, predictions, write, SKU intervals, 13 segments)"
/usr/bin/time -f "refresh: %e s wall, %M KB peak" $rebuy refresh --as-of "$end" --no-progress --format json > "$dir/refresh.json"
python3 -c "import json; d=json.load(open('$dir/refresh.json')); print(json.dumps({k: d[k] for k in ('customers','orders','timings','bgnbd','gamma_gamma')}, indent=2))"
echo "== 10,000 new orders on the last day, imported, then the incremental refresh"
python3 scripts/new-orders.py "$dir" "$n"
$rebuy import orders "$dir/new_orders.csv" --no-progress > /dev/null
/usr/bin/time -f "incremental refresh: %e s wall, %M KB peak" $rebuy refresh --changed --as-of "$end" --format json > "$dir/changed.json"
python3 -c "import json; d=json.load(open('$dir/changed.json')); print({k: d[k] for k in ('customers','removed','secs')})"
echo "== the summary like for like: the same transactions CSV in memory, rebuy's Summary::of"
cargo run --release --quiet --example summary_from_csv -- "$dir/transactions.csv" "$end"
echo "== reference: lifetimes in a virtualenv"
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet lifetimes
fi
"$dir/venv/bin/python" scripts/lifetimes_reference.py "$dir/transactions.csv" "$end"
