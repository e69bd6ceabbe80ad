# Parameterised copy of /work/main/scripts/sqlite-floor-orders.py (same writes, same pragmas by default).
# Env knobs: SECS, COMMIT (orders per commit), STMT (orders per INSERT), SORT=none|cust|id,
# CKPT (checkpoint period s), MMAP (bytes), CACHE (pragma cache_size), FK=0|1, NOCONFLICT=1 (plain INSERT),
# IDHASH=1 (fill an id_h column with a 63-bit hash of id, for the 'idhash' schema), CONFLICT=col (conflict target),
# SEQ=1 (app-assigned seq, for the 'wor' schema).
# Prints orders/s overall and per half, time inside sqlite, WAL bytes written by the writer thread
# (/proc task wchar) and db bytes written by the checkpointer, per order.
import sqlite3, time, threading, random, json, sys, os, hashlib
E = os.environ.get
secs = float(E('SECS', '10')); COMMIT = int(E('COMMIT', '20000')); STMT = int(E('STMT', '1000'))
SORT = E('SORT', 'none'); CKPT = float(E('CKPT', '0.1')); MMAP = int(E('MMAP', '0'))
CACHE = E('CACHE', '-262144'); FK = E('FK', '0'); NOCONFLICT = E('NOCONFLICT', '0') == '1'
MERGE = int(E('MERGE', '0'))  # MERGE=M ('split' schema): every M orders, one txn copies new orders into orders_cust sorted
IDHASH = E('IDHASH', '0') == '1'; SEQ = E('SEQ', '0') == '1'  # SEQ=1: app assigns seq (WITHOUT ROWID schema)
def conn():
    c = sqlite3.connect('rebuy.db', isolation_level=None, check_same_thread=False)
    for p in ("journal_mode=wal", "synchronous=normal", f"cache_size={CACHE}", "wal_autocheckpoint=0",
              "busy_timeout=10000", f"mmap_size={MMAP}", f"foreign_keys={FK}", "temp_store=memory"):
        c.execute("pragma " + p)
    return c
def wchar(tid):
    for l in open(f'/proc/self/task/{tid}/io'):
        if l.startswith('wchar'): return int(l.split()[1])
w = conn()
stop = False; ck = {'tid': None, 'n': 0, 'busy': 0, 'maxwal': 0}
def checkpointer():
    ck['tid'] = threading.get_native_id()
    c = conn()
    while not stop:
        time.sleep(CKPT)
        r = c.execute("pragma wal_checkpoint(PASSIVE)").fetchall()[0]
        ck['n'] += 1; ck['busy'] += r[0]
        ck['w'] = wchar(ck['tid'])
        try: ck['maxwal'] = max(ck['maxwal'], os.path.getsize('rebuy.db-wal'))
        except OSError: pass
t = threading.Thread(target=checkpointer); t.start()
while ck['tid'] is None: time.sleep(0.01)
me = threading.get_native_id(); w0 = wchar(me); c0 = wchar(ck['tid'])
items = json.dumps([{"sku": "LOTION", "name": "LOTION", "category": "", "quantity": 1, "unit_price": 3980}])
cols = "id, customer_id, placed_at, total, currency, items" + (", id_h" if IDHASH else "")
cols += ", seq" if SEQ else ""
ph = "(?,?,?,?,?,?" + (",?" if IDHASH else "") + (",?" if SEQ else "") + ")"
conflict = "" if NOCONFLICT else f" ON CONFLICT ({E('CONFLICT', 'id')}) DO NOTHING"
n = 0; start = time.time(); run = random.randrange(1 << 30); insql = 0.0; half = None; commits = 0
merged = 0; merges = 0; mmax = 0.0; mseq = w.execute("SELECT COALESCE(MAX(seq), 0) FROM orders").fetchone()[0]
while time.time() - start < secs:
    rows = []
    for _ in range(COMMIT):
        n += 1
        r = (f"f{run}-{n}", f"c{(n * 7919) % 10000 + 1}", 1761991200000, 3980, "JPY", items)
        if IDHASH: r = r + (int.from_bytes(hashlib.blake2b(r[0].encode(), digest_size=8).digest(), 'little') >> 1,)
        if SEQ: r = r + (n,)
        rows.append(r)
    if SORT == 'cust': rows.sort(key=lambda r: r[1])
    elif SORT == 'id': rows.sort(key=lambda r: r[0])
    per = {}
    for r in rows:
        a = per.setdefault(r[1], [0, 0, r[2], r[2]]); a[0] += 1; a[1] += r[3]
    ids = list(per)
    if SORT != 'none': ids.sort()
    t0 = time.time()
    w.execute("BEGIN IMMEDIATE")
    for i in range(0, len(rows), STMT):
        chunk = rows[i:i + STMT]
        w.execute(f"INSERT INTO orders ({cols}) VALUES " + ",".join([ph] * len(chunk)) + conflict,
                  [v for r in chunk for v in r])
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
    if MERGE and n - merged >= MERGE:
        tm = time.time(); w.execute("BEGIN IMMEDIATE")
        w.execute("INSERT INTO orders_cust SELECT customer_id, placed_at, id, total, currency, has_items, seq FROM orders "
                  "WHERE seq > ? ORDER BY customer_id, placed_at, id", (mseq,))
        mseq = w.execute("SELECT MAX(seq) FROM orders").fetchone()[0]; merged = n; merges += 1
        w.execute("COMMIT"); mmax = max(mmax, time.time() - tm)
    insql += time.time() - t0; commits += 1
    if half is None and time.time() - start >= secs / 2: half = (n, time.time() - start)
el = time.time() - start
wal = wchar(me) - w0
stop = True; t.join()
db = ck['w'] - c0
h2 = (n - half[0]) / (el - half[1]) if half and el > half[1] else 0
print(f"RESULT {os.environ.get('LABEL','?')}: {n / el:,.0f} orders/s ({n} in {el:.1f}s; 1st half {half[0]/half[1] if half else 0:,.0f}, "
      f"2nd half {h2:,.0f}); sqlite-only {n / insql:,.0f}/s; WAL {wal / n:,.0f} B/order, db-ckpt {db / n:,.0f} B/order; "
      f"commits {commits}, merges {merges} (longest {mmax:.2f}s), ckpts {ck['n']} busy {ck['busy']}, max wal {ck['maxwal'] / 1e6:.0f} MB; "
      f"db {os.path.getsize('rebuy.db') / 1e6:.0f} MB; stored {w.execute('select count(*) from orders').fetchone()[0]}")
