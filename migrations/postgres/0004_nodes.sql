-- Nodes and leases: every daemon (and every CLI process that drives a run)
-- registers a node and renews its heartbeat; a run in flight belongs to a
-- node (owner_node) under a lease epoch that every takeover increments.
-- Heartbeats are milliseconds since the Unix epoch by the database's clock,
-- so nodes with skewed clocks agree on who has expired.
CREATE TABLE nodes (
    id            TEXT COLLATE "C"   PRIMARY KEY,
    hostname      TEXT COLLATE "C"   NOT NULL,
    pid           BIGINT NOT NULL,
    version       TEXT COLLATE "C"   NOT NULL,
    role          TEXT COLLATE "C"   NOT NULL CHECK (role IN ('daemon', 'cli')),
    started_at    TEXT COLLATE "C"   NOT NULL,
    heartbeat_ms  BIGINT NOT NULL,
    -- live: renewing; stopped: left cleanly; expired: declared dead by a
    -- node that found its heartbeat older than the lease.
    state         TEXT COLLATE "C"   NOT NULL CHECK (state IN ('live', 'stopped', 'expired'))
);
CREATE INDEX nodes_by_state ON nodes (state, heartbeat_ms);

ALTER TABLE runs ADD COLUMN owner_node TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_in_flight_by_owner ON runs (owner_node)
    WHERE state IN ('pending', 'creating', 'waiting', 'pruning');
