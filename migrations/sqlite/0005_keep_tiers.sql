-- Calendar keep tiers besides the count (`retention` is keep_last): counts
-- of buckets kept per tier (0 = off) and keep_within in seconds.
ALTER TABLE definitions ADD COLUMN keep_hourly  INTEGER NOT NULL DEFAULT 0 CHECK (keep_hourly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_daily   INTEGER NOT NULL DEFAULT 0 CHECK (keep_daily   BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_weekly  INTEGER NOT NULL DEFAULT 0 CHECK (keep_weekly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_monthly INTEGER NOT NULL DEFAULT 0 CHECK (keep_monthly BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_yearly  INTEGER NOT NULL DEFAULT 0 CHECK (keep_yearly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_within_secs INTEGER CHECK (keep_within_secs > 0);
