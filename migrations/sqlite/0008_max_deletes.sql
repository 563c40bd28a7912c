-- The blast-radius limit of one definition: the most snapshots one
-- post-run prune may delete (0 = no limit); NULL takes
-- [daemon] max_deletes_per_run.
ALTER TABLE definitions ADD COLUMN max_deletes_per_run INTEGER CHECK (max_deletes_per_run BETWEEN 0 AND 65536);
