#!/usr/bin/env python3
"""The 10,000 new orders of the incremental-refresh benchmarks (scripts/bench-metrics.sh,
scripts/bench-postgres.sh): random customers of a shop of N (C0000000…), seed 11, on the last
day, so that both benchmarks measure the same change. Usage: new-orders.py DIR N"""
import random
import sys

d, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(11)
with open(f"{d}/new_orders.csv", "w") as f:
    f.write("order_id,customer_id,placed_at,currency,total\n")
    for i in range(10000):
        f.write(f"N{i},C{rng.randrange(n):07d},2025-12-31T12:00:00+09:00,JPY,{rng.randrange(500, 20000)}\n")
