-- PostgreSQL twin of migrations/sqlite/0010_hooks.sql: a definition's hook
-- commands (JSON object; an absent key takes the provider's, then the
-- daemon's setting), and per run the snapshot's consistency, the hook
-- progress ('pre': post hook owed, 'post': started, 'done') and the tail of
-- the hooks' output.
ALTER TABLE definitions ADD COLUMN hooks TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN consistency TEXT CHECK (consistency IN ('app', 'crash'));
ALTER TABLE runs ADD COLUMN hook_state TEXT CHECK (hook_state IN ('pre', 'post', 'done'));
ALTER TABLE runs ADD COLUMN hook_output TEXT;
