-- PostgreSQL twin of migrations/sqlite/0005_keep_tiers.sql: calendar keep
-- tiers besides the count (`retention` is keep_last): counts of periods kept
-- per tier (0 = off) and keep_within in seconds.
ALTER TABLE definitions ADD COLUMN keep_hourly  BIGINT NOT NULL DEFAULT 0 CHECK (keep_hourly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_daily   BIGINT NOT NULL DEFAULT 0 CHECK (keep_daily   BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_weekly  BIGINT NOT NULL DEFAULT 0 CHECK (keep_weekly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_monthly BIGINT NOT NULL DEFAULT 0 CHECK (keep_monthly BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_yearly  BIGINT NOT NULL DEFAULT 0 CHECK (keep_yearly  BETWEEN 0 AND 65536);
ALTER TABLE definitions ADD COLUMN keep_within_secs BIGINT CHECK (keep_within_secs > 0);
