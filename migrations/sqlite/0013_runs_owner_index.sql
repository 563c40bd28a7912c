-- Runs in flight are found by owner through runs_one_active, which holds
-- exactly the runs in flight (the same WHERE): the queries by owner_node
-- repeat that condition, so SQLite scans that index and checks the owner.
-- The owner's own index cost every claim an insert into a fourth index
-- (about a tenth of a burst's claim time) to speed up queries that run
-- only when a node's runs are taken over or listed. PostgreSQL keeps it:
-- several daemons share that store and look up each other's runs.
DROP INDEX runs_in_flight_by_owner;
