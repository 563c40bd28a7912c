-- PostgreSQL twin of migrations/sqlite/0003_definitions_by_name.sql.
-- Definitions are addressed by name from the CLI.
CREATE INDEX definitions_by_name ON definitions (name);
