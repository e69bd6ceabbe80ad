#!/usr/bin/env bash
# The experiments benchmark (issue "Does it work?"): `rebuy simulate` over one year of the
# million-customer shop of scripts/bench-metrics.sh (5 M orders, generated as a BG/NBD process
# with a fixed seed), then `rebuy report scenarios` over the simulation's database, which then
# holds about a million enrollments beside the 5 M orders.
# Usage: scripts/bench-experiments.sh [DIR]   (DIR defaults to target/bench-experiments)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/bench-experiments}
shop=$PWD/target/bench-metrics/rebuy.db
if [ ! -f "$shop" ]; then
  echo "== no $shop yet: generating and importing the shop (scripts/bench-metrics.sh)"
  scripts/bench-metrics.sh 1000000
fi
cargo build --release --quiet
mkdir -p "$dir/scenarios"
# Absolute: paths in a config file are read relative to the file.
dir=$(realpath "$dir")
cp scripts/bench/repeat-thanks.yaml "$dir/scenarios/"
printf 'database: %s\nscenarios_dir: %s/scenarios\ntemplates_dir: %s/templates\n' "$shop" "$dir" "$PWD" > "$dir/rebuy.yaml"
printf 'database: %s/sim.db\nscenarios_dir: %s/scenarios\ntemplates_dir: %s/templates\n' "$dir" "$dir" "$PWD" > "$dir/report.yaml"
rebuy=target/release/rebuy
echo "== rebuy simulate, 2025-01-01 to 2025-12-31, hourly ticks"
/usr/bin/time -f "simulate: %e s wall, %M KB peak" $rebuy --config "$dir/rebuy.yaml" --log-level warn \
  simulate --from 2025-01-01 --to 2025-12-31 --no-progress --out "$dir/sim.db" --format json > "$dir/year.json"
python3 -c "import json; d=json.load(open('$dir/year.json')); print(json.dumps(d['run'], indent=2)); print(d['sends'])"
echo "== rebuy report scenarios over the simulation's database"
for i in 1 2 3; do
  /usr/bin/time -f "report: %e s wall, %M KB peak" $rebuy --config "$dir/report.yaml" report scenarios --format json > "$dir/report.json"
done
python3 -c "import json; r=json.load(open('$dir/report.json'))[0]; print({k: r[k] for k in ('enrolled','treatment','held_out','messages_sent','converted_treatment','converted_comparison','verdict')})"
/usr/bin/time -f "report with --html: %e s wall, %M KB peak" $rebuy --config "$dir/report.yaml" report scenarios --html "$dir/report.html" > /dev/null
