-- Webhook notifications ([notify] webhook_url).
--
-- notify_queue: events waiting for delivery, oldest (lowest id) first. A
-- run's events are inserted in the same transaction as its final state, a
-- snapshot-gone event with the record's change, so a restart loses none.
-- The delivering daemon deletes a row once the receiver answered 2xx. When
-- the queue holds more than [notify] queue_limit rows, the oldest are
-- deleted and counted in meta 'notify_dropped'.
CREATE TABLE notify_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The event's own id (a UUID, also in the payload), for receivers that
    -- deduplicate.
    event_id    TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('run_failed', 'run_recovered',
                                                 'prune_blocked', 'snapshot_gone')),
    def_name    TEXT    NOT NULL,
    -- The JSON body sent, as sent.
    payload     TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);

-- Definitions whose latest finished snapshot run failed, and whose failure
-- was notified: further failures send nothing until a success removes the
-- row (and sends run_recovered).
CREATE TABLE notify_failing (
    provider      TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    disk_id       INTEGER NOT NULL,
    def_name      TEXT    NOT NULL,
    since         TEXT    NOT NULL,
    first_run_id  INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    PRIMARY KEY (provider, target, disk_id, def_name)
);

INSERT INTO meta (key, value) VALUES ('notify_dropped', '0');
