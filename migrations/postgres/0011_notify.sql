-- PostgreSQL twin of migrations/sqlite/0011_notify.sql: the webhook's
-- persisted queue (oldest id first) and the per-definition failing state
-- that limits failure notices to one until the definition recovers.
CREATE TABLE notify_queue (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT    COLLATE "C" NOT NULL UNIQUE,
    kind        TEXT    COLLATE "C" NOT NULL
                CHECK (kind IN ('run_failed', 'run_recovered', 'prune_blocked', 'snapshot_gone')),
    def_name    TEXT    COLLATE "C" NOT NULL,
    payload     TEXT    COLLATE "C" NOT NULL,
    created_at  TEXT    COLLATE "C" NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT    COLLATE "C"
);

CREATE TABLE notify_failing (
    provider      TEXT    COLLATE "C" NOT NULL,
    target        TEXT    COLLATE "C" NOT NULL,
    disk_id       BIGINT  NOT NULL,
    def_name      TEXT    COLLATE "C" NOT NULL,
    since         TEXT    COLLATE "C" NOT NULL,
    first_run_id  BIGINT  NOT NULL,
    failures      BIGINT  NOT NULL,
    PRIMARY KEY (provider, target, disk_id, def_name)
);

INSERT INTO meta (key, value) VALUES ('notify_dropped', '0');
