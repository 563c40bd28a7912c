-- Holds: a held snapshot is never deleted by snapsched (retention, prune,
-- `def rm --delete-snapshots`) until released. held_at is set while the
-- hold lasts; hold_reason is the operator's text ('' when none was given).
ALTER TABLE snapshots ADD COLUMN held_at TEXT;
ALTER TABLE snapshots ADD COLUMN hold_reason TEXT;
