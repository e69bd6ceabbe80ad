#!/usr/bin/env python3
"""The floor under rebuy's orders import on this machine, measured beside it: Python's own
sqlite3 (C) inserting 500,000 orders into the same schema (rowid table, unique id, the
per-customer covering index) in 125,000-row transactions, WAL, synchronous=NORMAL. No parsing,
no checks: what SQLite alone costs. Usage: python3 scripts/sqlite-floor.py"""
import os, random, sqlite3, tempfile, time

random.seed(1)
rows = [(f"O{i:08d}", f"C{random.randrange(100000):07d}", 1_700_000_000_000 + random.randrange(10**10),
         random.randrange(1000, 20000), "JPY",
         '[{"sku":"A","name":"x","category":"c","quantity":1,"unit_price":3000}]') for i in range(500_000)]
path = os.path.join(tempfile.mkdtemp(), "floor.db")
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL"); db.execute("PRAGMA cache_size=-262144")
db.execute("CREATE TABLE orders (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL, "
           "placed_at BIGINT NOT NULL, total BIGINT NOT NULL, currency TEXT NOT NULL, items TEXT NOT NULL DEFAULT '[]')")
db.execute("CREATE INDEX orders_customer ON orders (customer_id, placed_at, id, total, currency)")
t0 = time.time()
for k in range(0, len(rows), 125_000):
    db.executemany("INSERT INTO orders (id, customer_id, placed_at, total, currency, items) VALUES (?,?,?,?,?,?)",
                   rows[k:k + 125_000])
    db.commit()
t = time.time() - t0
print(f"sqlite3 floor: 500000 order rows in {t:.2f} s = {500000 / t:.0f} rows/s")
