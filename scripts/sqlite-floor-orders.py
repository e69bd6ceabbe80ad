# The SQLite floor of POST /v1/orders in batches: what rebuy's writer does per commit (insert
# the orders, add to each customer's aggregates, mark their metrics dirty), with the server's
# pragmas and a passive checkpoint every 100 ms on a second connection, from Python's C sqlite3
# with no HTTP, no JSON and no validation. Orders in commits of 20,000 (20 requests of 1,000).
# Run it in a folder whose rebuy.db holds the bench's customers (scripts/bench-api.sh does).
# Usage: python3 sqlite-floor-orders.py [SECONDS]
import sqlite3, time, threading, random, json, sys
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 15
def conn():
    c = sqlite3.connect('rebuy.db', isolation_level=None, check_same_thread=False)
    for p in ("journal_mode=wal", "synchronous=normal", "cache_size=-262144", "wal_autocheckpoint=0", "busy_timeout=10000"):
        c.execute("pragma " + p)
    return c
w = conn()
stop = False
def checkpointer():
    c = conn()
    while not stop:
        time.sleep(0.1)
        c.execute("pragma wal_checkpoint(PASSIVE)").fetchall()
t = threading.Thread(target=checkpointer); t.start()
items = json.dumps([{"sku": "LOTION", "name": "LOTION", "category": "", "quantity": 1, "unit_price": 3980}])
n = 0; start = time.time(); run = random.randrange(1 << 30)
while time.time() - start < secs:
    rows = []
    for _ in range(20000):
        n += 1
        rows.append((f"f{run}-{n}", f"c{(n * 7919) % 10000 + 1}", 1761991200000, 3980, "JPY", items))
    w.execute("BEGIN IMMEDIATE")
    for i in range(0, len(rows), 1000):
        chunk = rows[i:i + 1000]
        w.execute("INSERT INTO orders (id, customer_id, placed_at, total, currency, items) VALUES "
                  + ",".join(["(?,?,?,?,?,?)"] * len(chunk)) + " ON CONFLICT (id) DO NOTHING",
                  [v for r in chunk for v in r])
    per = {}
    for r in rows:
        a = per.setdefault(r[1], [0, 0, r[2], r[2]]); a[0] += 1; a[1] += r[3]
    ids = list(per)
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        w.execute("WITH v (id, n, spent, first_at, last_at) AS (VALUES " + ",".join(["(?,?,?,?,?)"] * len(chunk)) + ") "
                  "UPDATE customers SET orders_count = customers.orders_count + v.n, total_spent = customers.total_spent + v.spent, "
                  "first_order_at = MIN(COALESCE(customers.first_order_at, v.first_at), v.first_at), "
                  "last_order_at = MAX(COALESCE(customers.last_order_at, v.last_at), v.last_at) FROM v WHERE customers.id = v.id",
                  [x for c in chunk for x in [c] + per[c]])
        w.execute("INSERT INTO metrics_dirty (customer_id) VALUES " + ",".join(["(?)"] * len(chunk))
                  + " ON CONFLICT (customer_id) DO UPDATE SET gen = metrics_dirty.gen + 1", chunk)
    w.execute("COMMIT")
el = time.time() - start
stop = True; t.join()
print(f"SQLite floor: {n} orders in {el:.1f} s = {n / el:,.0f} orders/s; stored {w.execute('select count(*) from orders').fetchone()[0]}")
