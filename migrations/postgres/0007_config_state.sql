-- PostgreSQL twin of migrations/sqlite/0007_config_state.sql.
--
-- The config file's definitions as last applied to this store, by a daemon
-- (start, SIGHUP) or by `snapsched config apply`. One row for the store:
-- every node reconciles the same set of config-sourced definitions, so
-- there is one applied version, whichever file it came from.
--
-- `digest` is the SHA-256 of the file's definitions in canonical form
-- (validated, sorted by identity), not of the raw text; `file_mtime_ms` the
-- file's modification time (ms since the Unix epoch). A daemon applies its
-- file only when its digest differs and its file is newer than this.
CREATE TABLE config_state (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    digest        TEXT COLLATE "C" NOT NULL,
    file_mtime_ms BIGINT NOT NULL,
    source_path   TEXT COLLATE "C" NOT NULL,
    hostname      TEXT COLLATE "C" NOT NULL,
    node          TEXT COLLATE "C",
    applied_at    TEXT COLLATE "C" NOT NULL
);
