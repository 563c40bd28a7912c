-- The API request budget shared by every process on this store.
--
-- One row per request granted: `bucket` is a hash of the API origin and
-- token (never the token), `at_ms` the database's clock at the grant, in
-- milliseconds since the Unix epoch. Rows are pruned once they are older
-- than the longest window (an hour).
CREATE TABLE api_budget (
    bucket TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL
);
CREATE INDEX api_budget_by_bucket ON api_budget (bucket, at_ms);
