-- Mail to the shop's team (the targets digest), one row per address per run of its job:
-- claimed ('sending') before it is handed over, then 'sent', 'failed' or 'unknown'. The
-- unique key makes a run repeated after a restart send nothing twice.
CREATE TABLE team_mail (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    slot INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (job, slot, recipient)
);
