#!/usr/bin/env bash
# SQLite and PostgreSQL side by side in one run (issue "Outgrow one machine"): the generated
# million-customer shop (examples/gen_bgnbd.rs, the same as scripts/bench-metrics.sh, about
# 5.1 M orders) imported into a fresh SQLite file and a fresh PostgreSQL database, then the full
# refresh, 10,000 new orders, the incremental refresh, and the back-test of
# scripts/bench-experiments.sh (2025, hourly; from PostgreSQL through its SQLite copy) on each. PostgreSQL comes from
# scripts/postgres.sh (Debian's cluster on loopback, its settings as installed but
# random_page_cost). Usage:
# [BACKENDS="sqlite postgres"] [KEEP_POSTGRES=1] [NO_SIMULATE=1] scripts/bench-postgres.sh [CUSTOMERS] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
dir=${2:-target/bench-postgres}
end=2025-12-31
mkdir -p "$dir/scenarios"
dir=$(realpath "$dir")
cargo build --release --quiet
if [ ! -s "$dir/orders.csv" ] || [ "$(cat "$dir/.customers" 2>/dev/null)" != "$n" ]; then
  cargo run --release --quiet --example gen_bgnbd -- "$dir" "$n" 7
  echo "$n" > "$dir/.customers"
fi
cp scenarios/segments.yaml "$dir/scenarios/"
mkdir -p "$dir/sim-scenarios"
cp scripts/bench/repeat-thanks.yaml "$dir/sim-scenarios/"
python3 scripts/new-orders.py "$dir" "$n"
server=$(scripts/postgres.sh)
name="rebuy_bench_$$"
psql -q "$server" -c "CREATE DATABASE $name"
# The planner setting docs/deploy.md recommends for SSDs (the default, 4, is for disks that
# seek): with it the incremental refresh copies its scope by index lookups, not by reading
# every customer.
psql -q "$server" -c "ALTER DATABASE $name SET random_page_cost = 1.1"
# KEEP_POSTGRES=1 keeps the database (its URL is printed) for measuring one step again.
if [ -z "${KEEP_POSTGRES:-}" ]; then
  trap 'psql -q "$server" -c "DROP DATABASE IF EXISTS $name" || true' EXIT
fi
pg_url="${server%/*}/$name"
[ -z "${KEEP_POSTGRES:-}" ] || echo "PostgreSQL database kept: $pg_url"
rm -f "$dir/rebuy.db" "$dir/rebuy.db"-*

rows() { wc -l < "$1" | awk '{print $1 - 1}'; }
customers=$(rows "$dir/customers.csv")
orders=$(rows "$dir/orders.csv")
echo "shop: $customers customers, $orders orders (gen_bgnbd seed 7)"

for backend in ${BACKENDS:-sqlite postgres}; do
  if [ $backend = sqlite ]; then db="$dir/rebuy.db"; else db="$pg_url"; fi
  printf 'database: %s\nscenarios_dir: %s\n' "$db" "$dir/scenarios" > "$dir/$backend.yaml"
  rebuy="target/release/rebuy --config $dir/$backend.yaml"
  echo "== $backend"
  for kind in customers orders; do
    start=$(date +%s.%N)
    /usr/bin/time -f "  (%e s wall, %U s user, %M KB peak)" $rebuy import $kind "$dir/$kind.csv" --no-progress > /dev/null
    end_t=$(date +%s.%N)
    count=$([ $kind = customers ] && echo "$customers" || echo "$orders")
    echo "import $kind: $count rows in $(echo "$end_t - $start" | bc -l | xargs printf '%.1f') s = $(echo "$count / ($end_t - $start)" | bc -l | xargs printf '%.0f') rows/s"
  done
  /usr/bin/time -f "full refresh: %e s wall, %M KB peak" $rebuy refresh --as-of "$end" --no-progress --format json > "$dir/$backend-refresh.json"
  python3 -c "import json; d=json.load(open('$dir/$backend-refresh.json')); print('  ', d['customers'], 'customers,', d['orders'], 'orders,', d['timings'])"
  $rebuy import orders "$dir/new_orders.csv" --no-progress > /dev/null
  /usr/bin/time -f "incremental refresh: %e s wall, %M KB peak" $rebuy refresh --changed --as-of "$end" --format json > "$dir/$backend-changed.json"
  python3 -c "import json; d=json.load(open('$dir/$backend-changed.json')); print('  ', {k: d[k] for k in ('customers','removed','secs')})"
  [ -z "${NO_SIMULATE:-}" ] || continue
  printf 'database: %s\nscenarios_dir: %s\ntemplates_dir: %s\n' "$db" "$dir/sim-scenarios" "$PWD/templates" > "$dir/$backend-sim.yaml"
  /usr/bin/time -f "simulate 2025, hourly: %e s wall, %M KB peak" target/release/rebuy --config "$dir/$backend-sim.yaml" --log-level warn \
    simulate --from 2025-01-01 --to 2025-12-31 --no-progress --out "$dir/$backend-sim.db" --format json > "$dir/$backend-sim.json"
  python3 -c "import json; d=json.load(open('$dir/$backend-sim.json')); r=d['run']; print('  ', {k: r[k] for k in ('secs','copy_secs','release_secs','tick_secs','enrolled','simulated')}, r['source'])"
done
