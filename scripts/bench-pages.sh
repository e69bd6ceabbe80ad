#!/usr/bin/env bash
# The pages benchmark (issue 17): the million-customer shop of the experiments benchmark
# (target/bench-experiments/sim.db: 1 M customers, 5 M orders, about a million enrollments of
# one scenario; scripts/bench-experiments.sh makes it), served by `rebuy serve` on loopback.
# A marketer and a support user sign in with curl; then 200 requests to each page, each
# request a different customer, query or scenario visit, and the time of each (curl's
# time_total on loopback: the server's time plus well under a millisecond) as p50, p95, max.
# The marketing figures are computed once at start and kept (docs/pages.md): the first
# request to a marketing page waits for them, and is reported apart as "first".
# Usage: scripts/bench-pages.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
dir=$(realpath target/bench-experiments)
if [ ! -f "$dir/sim.db" ]; then
  echo "== no $dir/sim.db yet: scripts/bench-experiments.sh makes it"
  scripts/bench-experiments.sh
fi
cargo build --release --quiet
port=8947
cat > "$dir/pages.yaml" <<YAML
database: $dir/sim.db
scenarios_dir: $dir/scenarios
templates_dir: $PWD/templates
default_timezone: Asia/Tokyo
shop: { name: Bench, from: "Bench <hello@bench.example>", currency: JPY, address: "Tokyo", contact: "support@bench.example", url: "https://bench.example" }
unsubscribe: { base_url: https://bench.example/unsubscribe }
http: { listen: 127.0.0.1:$port }
YAML
rebuy="target/release/rebuy --config $dir/pages.yaml"
for u in bench-support:support bench-marketer:marketer; do
  $rebuy user remove "${u%%:*}" >/dev/null 2>&1 || true
  echo "a long enough password" | $rebuy user add "${u%%:*}" --role "${u##*:}" 2>/dev/null
done
$rebuy serve --log-level warn &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
base="http://127.0.0.1:$port"
sign_in() { # user jar
  curl -s -c "$2" -b "$2" "$base/ui/login" -o "$2.html"
  local csrf
  csrf=$(grep -o 'name="csrf" value="[^"]*"' "$2.html" | sed 's/.*value="//;s/"$//')
  curl -s -c "$2" -b "$2" -o /dev/null --data-urlencode "csrf=$csrf" --data-urlencode "name=$1" \
    --data-urlencode "password=a long enough password" --data-urlencode "next=" "$base/ui/login"
}
tmp=$(mktemp -d)
sign_in bench-support "$tmp/support"
sign_in bench-marketer "$tmp/marketer"
# Times each URL of a file (one per line) with the jar; prints "name p50 p95 max" in ms.
measure() { # name jar urls
  local first
  first=$(curl -s -o /dev/null -w '%{time_total}\n' -b "$2" "$(head -1 "$3")")
  while read -r url; do
    code=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -b "$2" "$url")
    [ "${code%% *}" = 200 ] || { echo "$url answered ${code%% *}" >&2; exit 1; }
    echo "${code##* }"
  done < "$3" | sort -n | awk -v name="$1" -v first="$first" '{ t[NR] = $1 * 1000 } END {
    printf "%-16s p50 %6.1f ms   p95 %6.1f ms   max %6.1f ms   (%d requests; first %.0f ms)\n",
      name, t[int(NR * 0.5)], t[int(NR * 0.95)], t[NR], NR, first * 1000 }'
}
python3 - "$n" "$base" "$tmp" <<'PY'
import random, sys, urllib.parse as u
n, base, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(17)
ids = [f"C{rng.randrange(1_000_000):07d}" for _ in range(n)]
with open(f"{tmp}/customer", "w") as f:
    f.writelines(f"{base}/ui/customers/{i}\n" for i in ids)
queries = []
for i, c in enumerate(ids):
    k = i % 4
    q = c if k == 0 else (f"customer {int(c[1:])}" if k == 1 else (c.lower() + "@example.jp" if k == 2 else f"O{rng.randrange(1, 5_000_000)}"))
    queries.append(q)
with open(f"{tmp}/search", "w") as f:
    f.writelines(f"{base}/ui/customers?q={u.quote(q)}\n" for q in queries)
for page in ("scenarios", "scenario", "segments"):
    path = {"scenarios": "/ui/scenarios", "scenario": "/ui/scenarios/repeat-thanks", "segments": "/ui/segments"}[page]
    with open(f"{tmp}/{page}", "w") as f:
        f.writelines(f"{base}{path}\n" for _ in range(n))
PY
echo "== $n requests per page, signed in, on the million-customer shop"
measure customer "$tmp/support" "$tmp/customer"
measure search "$tmp/support" "$tmp/search"
measure "scenario page" "$tmp/marketer" "$tmp/scenario"
measure scenarios "$tmp/marketer" "$tmp/scenarios"
measure segments "$tmp/marketer" "$tmp/segments"
rm -rf "$tmp"
