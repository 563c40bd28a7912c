-- Runs and snapshot records are keyed by the definition identity (provider,
-- target, disk_id, name), not by definitions.id: removing a definition keeps
-- its history, and re-adding the same identity finds it again.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    provider      TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    disk_id       INTEGER NOT NULL,
    def_name      TEXT    NOT NULL,
    -- The instant the schedule named (RFC 3339, UTC); for manual runs, the
    -- moment of the request.
    slot          TEXT    NOT NULL,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'catchup', 'manual', 'prune')),
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'creating', 'waiting', 'pruning',
                                                     'succeeded', 'failed', 'skipped', 'missed', 'interrupted')),
    snapshot_name TEXT,
    snapshot_id   TEXT,
    operation_id  TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    missed_count  INTEGER,
    error_class   TEXT,
    error         TEXT,
    -- Process that drives the run while it is not final; recovery takes over
    -- runs whose owner is gone.
    owner_pid     INTEGER,
    created_at    TEXT    NOT NULL,
    started_at    TEXT,
    updated_at    TEXT    NOT NULL,
    finished_at   TEXT,
    pruned        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (provider, target, disk_id, def_name, slot)
);
CREATE INDEX runs_by_identity ON runs (provider, target, disk_id, def_name, id DESC);
-- At most one run in flight per definition: this index is the per-definition
-- lock shared by the daemon and the CLI.
CREATE UNIQUE INDEX runs_one_active ON runs (provider, target, disk_id, def_name)
    WHERE state IN ('pending', 'creating', 'waiting', 'pruning');

CREATE TABLE snapshots (
    id            INTEGER PRIMARY KEY,
    provider      TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    disk_id       INTEGER NOT NULL,
    def_name      TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    remote_id     TEXT,
    run_id        INTEGER,
    created_at    TEXT,
    size_bytes    INTEGER,
    -- present: exists at the provider as far as we know; deleted: we pruned
    -- it; gone: the provider stopped listing it (deleted by hand).
    state         TEXT    NOT NULL CHECK (state IN ('present', 'deleted', 'gone')),
    adopted       INTEGER NOT NULL DEFAULT 0,
    recorded_at   TEXT    NOT NULL,
    deleted_at    TEXT,
    delete_reason TEXT,
    UNIQUE (provider, target, disk_id, name)
);
CREATE INDEX snapshots_by_identity ON snapshots (provider, target, disk_id, def_name, state);
