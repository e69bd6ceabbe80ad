# Usage: python3 readers.py SCHEMA DIR [N] — fresh db of SCHEMA (prep.py), N orders (default 1,000,000) over
# customers c1..c10000 inserted in 20k commits, then times rebuy's reader queries (SQL copied from src/store):
# refresh scan (metrics.rs orders_by_customer), engine page (orders.rs orders_after, 20k orders after a cursor),
# new_orders_of_customers (one 1/10 customer range), 20k look-ups by id; with EXPLAIN QUERY PLAN.
import sqlite3, sys, time, subprocess, json, random
schema, d = sys.argv[1], sys.argv[2]; N = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
subprocess.run(['python3', '/tmp/floor/prep.py', schema, d], check=True, capture_output=True)
c = sqlite3.connect(d + '/rebuy.db', isolation_level=None)
for p in ("journal_mode=wal", "synchronous=normal", "cache_size=-262144", "temp_store=memory"): c.execute("pragma " + p)
items = json.dumps([{"sku": "LOTION", "name": "LOTION", "category": "", "quantity": 1, "unit_price": 3980}])
idh = schema == 'idhash'
import hashlib
h = lambda s: int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), 'little') >> 1
t0 = time.time()
for s in range(0, N, 20000):
    rows = [(f"f7-{n}", f"c{(n * 7919) % 10000 + 1}", 1761991200000 + n * 1000, 3980, "JPY", items) + ((h(f"f7-{n}"),) if idh else ())
            for n in range(s + 1, s + 20001)]
    c.execute("BEGIN")
    c.executemany("INSERT INTO orders (id, customer_id, placed_at, total, currency, items" + (", id_h" if idh else "") + ") VALUES (?,?,?,?,?,?" + (",?" if idh else "") + ")", rows)
    c.execute("COMMIT")
if schema == 'split':
    c.execute("INSERT INTO orders_cust SELECT customer_id, placed_at, id, total, currency, has_items, seq FROM orders ORDER BY customer_id, placed_at, id")
    t = time.time(); c.execute("SELECT customer_id, placed_at, total FROM orders_cust ORDER BY customer_id, placed_at").fetchall()
    t = time.time(); n = len(c.execute("SELECT customer_id, placed_at, total FROM orders_cust ORDER BY customer_id, placed_at").fetchall())
    print(f"  split: refresh scan over orders_cust {(time.time() - t) * 1000:,.0f} ms ({n} rows)")
    sys.exit(0)  # the other queries need rewriting for orders_cust + tail (as written they scan orders per row)
c.execute("pragma wal_checkpoint(TRUNCATE)")
print(f"{schema}: loaded {N} in {time.time() - t0:.0f}s, db {c.execute('pragma page_count').fetchone()[0] * 4096 / 1e6:.0f} MB")
def timed(name, sql, args=(), reps=3):
    plan = " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql, args))
    best = 1e9
    for _ in range(reps):
        t = time.time(); r = c.execute(sql, args).fetchall(); best = min(best, time.time() - t)
    print(f"  {name}: {best * 1000:,.0f} ms ({len(r)} rows)  plan: {plan[:230]}")
timed("refresh scan", "SELECT customer_id, placed_at, total FROM orders ORDER BY customer_id, placed_at")
timed("engine page", "SELECT CAST(COALESCE(json_group_array(json_array(seq, id, customer_id, placed_at, total, nth, timezone)), '[]') AS TEXT) FROM "
      "(SELECT o.seq, o.id, o.customer_id, o.placed_at, o.total, c.timezone, "
      "(SELECT COUNT(*) FROM (SELECT 1 FROM orders o2 WHERE o2.customer_id = o.customer_id "
      "AND (o2.placed_at, o2.id) <= (o.placed_at, o.id) LIMIT ?3) AS earlier) AS nth FROM orders o "
      "JOIN customers c ON c.id = o.customer_id WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2) AS page", (N - 20000, 20000, 2**62))
timed("new_orders_of_customers", "SELECT CAST(COALESCE(json_group_array(json_array(w.seq, w.id, w.customer_id, w.placed_at, w.total, w.nth, c.timezone)), '[]') AS TEXT) "
      "FROM (SELECT seq, id, customer_id, placed_at, total, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY placed_at, id) AS nth "
      "FROM orders WHERE customer_id > ?1 AND customer_id <= ?4) AS w JOIN customers c ON c.id = w.customer_id WHERE w.seq > ?2 AND w.seq <= ?3",
      ('c5', N - 20000, N, 'c6'))
ids = [f"f7-{random.randrange(1, N + 1)}" for _ in range(20000)]
q = "SELECT seq FROM orders WHERE " + ("id_h = ? AND id = ?" if idh else "id = ?")
plan = " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + q, (h(ids[0]), ids[0]) if idh else (ids[0],)))
t = time.time()
for i in ids: c.execute(q, (h(i), i) if idh else (i,)).fetchone()
print(f"  20k look-ups by id: {(time.time() - t) * 1000:,.0f} ms  plan: {plan}")
