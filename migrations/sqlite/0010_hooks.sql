-- Hook commands of a definition (JSON object: pre_hook, post_hook,
-- hook_timeout, on_pre_hook_failure, on_failure, on_success; a key that is
-- absent takes the provider's, then the daemon's setting).
ALTER TABLE definitions ADD COLUMN hooks TEXT NOT NULL DEFAULT '{}';
-- How consistent a run's snapshot is ('app' after a successful pre hook,
-- 'crash' otherwise), set when the create request is sent.
ALTER TABLE runs ADD COLUMN consistency TEXT CHECK (consistency IN ('app', 'crash'));
-- Hook progress, written before each hook starts: 'pre' (the post hook is
-- owed), 'post' (it started), 'done'; NULL for a run without hooks. A run
-- resumed in 'pre' or 'post' runs its post hook first.
ALTER TABLE runs ADD COLUMN hook_state TEXT CHECK (hook_state IN ('pre', 'post', 'done'));
-- The tail of the hooks' output with their exit status.
ALTER TABLE runs ADD COLUMN hook_output TEXT;
