-- Definitions are addressed by name from the CLI.
CREATE INDEX definitions_by_name ON definitions (name);
