-- The queue functions are PL/pgSQL, so each session caches one generic plan per statement, made
-- from the statistics it saw first. A worker's session usually starts on an idle queue: its
-- cached plans then find rows by id with a sequential scan (cheapest on a table of ten rows),
-- and keep doing so when a backlog of 100 000 arrives. bench/run's drain rounds caught every
-- claim rescanning the whole table that way (10-50 ms of the database's CPU per claim of 16,
-- taken from the requests beside it). Each of these statements has one good plan, an index
-- scan, whatever the statistics say.
ALTER FUNCTION jobs_claim(text, int, int) SET enable_seqscan = off;
ALTER FUNCTION jobs_succeed(uuid[], uuid[]) SET enable_seqscan = off;
ALTER FUNCTION jobs_renew(uuid[], uuid[], int) SET enable_seqscan = off;
ALTER FUNCTION jobs_finish(uuid, uuid, text, timestamptz) SET enable_seqscan = off;
ALTER FUNCTION jobs_reap() SET enable_seqscan = off;

-- An idle worker asks when the next queued job is due (min(run_at) over the queued rows); over a
-- backlog that was a scan of every queued row. With this index it is one index probe.
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
