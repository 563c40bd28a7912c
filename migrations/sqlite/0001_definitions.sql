-- Marks the file as a snapsched database and counts definition changes, so a
-- running daemon notices edits made by the CLI without re-reading every row.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('application', 'snapsched');
INSERT INTO meta (key, value) VALUES ('definitions_generation', '0');

CREATE TABLE definitions (
    id                     INTEGER PRIMARY KEY,
    provider               TEXT    NOT NULL,
    target                 TEXT    NOT NULL,
    disk_id                INTEGER NOT NULL CHECK (disk_id >= 1),
    name                   TEXT    NOT NULL,
    schedule               TEXT    NOT NULL,
    timezone               TEXT,
    retention              INTEGER NOT NULL CHECK (retention BETWEEN 0 AND 65536),
    active                 INTEGER NOT NULL DEFAULT 1,
    desc                   TEXT    NOT NULL DEFAULT '',
    fsfreeze               INTEGER NOT NULL DEFAULT 0,
    max_age_secs           INTEGER,
    catch_up_deadline_secs INTEGER,
    tags                   TEXT    NOT NULL DEFAULT '[]',
    source                 TEXT    NOT NULL CHECK (source IN ('config', 'cli')),
    source_path            TEXT,
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    UNIQUE (provider, target, disk_id, name)
);

CREATE TRIGGER definitions_ins AFTER INSERT ON definitions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'definitions_generation';
END;
CREATE TRIGGER definitions_upd AFTER UPDATE ON definitions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'definitions_generation';
END;
CREATE TRIGGER definitions_del AFTER DELETE ON definitions BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'definitions_generation';
END;
