-- Cross-region copies of DigitalOcean droplet snapshots.
-- The regions a definition copies each new snapshot to (JSON array; '[]':
-- none).
ALTER TABLE definitions ADD COLUMN copy_regions TEXT NOT NULL DEFAULT '[]';
-- The regions a snapshot is available in, as the provider last said (JSON
-- array); NULL when never read (snapshots of definitions without copies).
ALTER TABLE snapshots ADD COLUMN regions TEXT;
-- One row per (snapshot, region) copy. 'sending' is written before the
-- transfer request, 'copying' with the provider's operation id once it is
-- accepted, then 'done' or 'failed' (after its attempts). A run resumed
-- after a crash polls a 'copying' operation and, for 'sending', looks for a
-- transfer already under way before it sends one.
CREATE TABLE snapshot_copies (
    id            INTEGER PRIMARY KEY,
    provider      TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    disk_id       INTEGER NOT NULL,
    def_name      TEXT    NOT NULL,
    snapshot      TEXT    NOT NULL,
    remote_id     TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    run_id        INTEGER,
    state         TEXT    NOT NULL CHECK (state IN ('sending', 'copying', 'done', 'failed')),
    operation_id  TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    updated_at    TEXT    NOT NULL,
    UNIQUE (provider, target, disk_id, snapshot, region)
);
CREATE INDEX snapshot_copies_by_identity ON snapshot_copies (provider, target, disk_id, def_name);
