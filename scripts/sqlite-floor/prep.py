# Usage: python3 prep.py SCHEMA DIR — copies /tmp/floor/base/rebuy.db to DIR/rebuy.db (fresh) and applies SCHEMA:
#  base      as made by `rebuy import` (page_size 4096)
#  ps8k/ps16k  same schema, VACUUMed to page_size 8192/16384
#  narrow    orders_customer (customer_id, placed_at)
#  noidx     no orders_customer at all (the writer's ceiling; readers would need another source)
#  split     no orders_customer; its content in a separate WITHOUT ROWID table orders_cust, filled in bulk (floor.py MERGE)
#  narrow3   orders_customer (customer_id, placed_at, total)
#  nouniq    orders without UNIQUE(id) (no dedupe at all: the cost of the unique index)
#  idhash    id stays TEXT NOT NULL without UNIQUE; new id_h INTEGER NOT NULL UNIQUE (app-computed 63-bit hash)
#  wor       orders WITHOUT ROWID, PRIMARY KEY (customer_id, placed_at, id) (clustered, replaces orders_customer),
#            seq INTEGER NOT NULL UNIQUE (app-assigned), id UNIQUE
import sqlite3, sys, shutil, os
schema, d = sys.argv[1], sys.argv[2]
os.makedirs(d, exist_ok=True)
for f in os.listdir(d): os.remove(os.path.join(d, f))
shutil.copy('/tmp/floor/base/rebuy.db', os.path.join(d, 'rebuy.db'))
c = sqlite3.connect(os.path.join(d, 'rebuy.db'), isolation_level=None)
assert c.execute('select count(*) from orders').fetchone()[0] == 0
cols = """customer_id TEXT NOT NULL REFERENCES customers (id), placed_at BIGINT NOT NULL, total BIGINT NOT NULL,
  currency TEXT NOT NULL, items TEXT NOT NULL DEFAULT '[]', has_items INTEGER GENERATED ALWAYS AS (items <> '[]') VIRTUAL"""
idx = "CREATE INDEX orders_customer ON orders (customer_id, placed_at, id, total, currency, has_items)"
if schema.startswith('ps'):
    c.execute('pragma journal_mode=delete'); c.execute(f"pragma page_size={ {'ps8k': 8192, 'ps16k': 16384}[schema] }")
    c.execute('vacuum'); c.execute('pragma journal_mode=wal')
elif schema == 'narrow':
    c.executescript("DROP INDEX orders_customer; CREATE INDEX orders_customer ON orders (customer_id, placed_at);")
elif schema == 'noidx':
    c.executescript("DROP INDEX orders_customer;")
elif schema == 'split':
    c.executescript("DROP INDEX orders_customer; CREATE TABLE orders_cust (customer_id TEXT NOT NULL, placed_at BIGINT NOT NULL, "
                    "id TEXT NOT NULL, total BIGINT NOT NULL, currency TEXT NOT NULL, has_items INTEGER NOT NULL, seq INTEGER NOT NULL, "
                    "PRIMARY KEY (customer_id, placed_at, id)) WITHOUT ROWID;")
elif schema == 'narrow3':
    c.executescript("DROP INDEX orders_customer; CREATE INDEX orders_customer ON orders (customer_id, placed_at, total);")
elif schema == 'nouniq':
    c.executescript(f"DROP TABLE orders; CREATE TABLE orders (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, {cols}); {idx};")
elif schema == 'idhash':
    c.executescript(f"DROP TABLE orders; CREATE TABLE orders (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, {cols}, id_h INTEGER NOT NULL UNIQUE); {idx};")
elif schema == 'wor':
    c.executescript(f"DROP TABLE orders; CREATE TABLE orders (seq INTEGER NOT NULL UNIQUE, id TEXT NOT NULL UNIQUE, {cols}, "
                    "PRIMARY KEY (customer_id, placed_at, id)) WITHOUT ROWID;")
else:
    assert schema == 'base', schema
# PREFILL=N (env): N orders already stored (ids p-1..p-N over c1..c10000), index built afterwards by CREATE INDEX.
N = int(os.environ.get('PREFILL', '0'))
if N:
    import json
    items = json.dumps([{"sku": "LOTION", "name": "LOTION", "category": "", "quantity": 1, "unit_price": 3980}])
    ix = c.execute("select sql from sqlite_master where name='orders_customer'").fetchone()
    if ix: c.execute("DROP INDEX orders_customer")
    c.execute("BEGIN")
    c.executemany("INSERT INTO orders (id, customer_id, placed_at, total, currency, items) VALUES (?,?,?,?,?,?)",
                  ((f"p-{n}", f"c{(n * 7919) % 10000 + 1}", 1761991200000, 3980, "JPY", items) for n in range(1, N + 1)))
    c.execute("COMMIT")
    if ix: c.execute(ix[0])
    if schema == 'split':
        c.execute("INSERT INTO orders_cust SELECT customer_id, placed_at, id, total, currency, has_items, seq FROM orders ORDER BY customer_id, placed_at, id")
    c.execute("pragma wal_checkpoint(TRUNCATE)")
print(schema, c.execute('pragma page_size').fetchone()[0], c.execute('pragma journal_mode').fetchone()[0],
      [r[0] for r in c.execute("select sql from sqlite_master where tbl_name='orders'")][:3])
