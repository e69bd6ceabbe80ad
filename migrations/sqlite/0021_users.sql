-- The people who sign in to the pages under /ui, their sessions, and what they did.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('support', 'marketer', 'admin')),
    -- argon2id in PHC form; the password itself is never stored.
    password_hash TEXT NOT NULL,
    -- 'en' or 'ja'; NULL: from the browser's Accept-Language.
    lang TEXT,
    -- An IANA zone; NULL: the shop's.
    timezone TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE ui_sessions (
    -- SHA-256 of the cookie's value: a copy of the database signs no one in.
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX ui_sessions_user ON ui_sessions (user_name);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);

-- The search box: customers by the start of their name, orders by id are already keyed.
CREATE INDEX customers_name ON customers (name);
