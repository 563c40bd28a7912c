-- PostgreSQL twin of migrations/sqlite/0009_snapshot_holds.sql: a held
-- snapshot is never deleted by snapsched until released. held_at is set
-- while the hold lasts; hold_reason is the operator's text ('' when none).
ALTER TABLE snapshots ADD COLUMN held_at TEXT COLLATE "C";
ALTER TABLE snapshots ADD COLUMN hold_reason TEXT COLLATE "C";
