-- PostgreSQL twin of migrations/sqlite/0008_max_deletes.sql: the most
-- snapshots one post-run prune of the definition may delete (0 = no
-- limit); NULL takes [daemon] max_deletes_per_run.
ALTER TABLE definitions ADD COLUMN max_deletes_per_run BIGINT CHECK (max_deletes_per_run BETWEEN 0 AND 65536);
