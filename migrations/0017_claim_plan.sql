-- jobs_claim's inner SELECT has one good plan: walk jobs_ready in order and stop after
-- p_limit rows. PL/pgSQL caches a generic plan per session, and a generic plan prices
-- LIMIT p_limit as a tenth of the table: once ANALYZE has seen a large backlog, the cached plan
-- became "every queued row, then sort" (tens of milliseconds per claim of 16 from 100 000,
-- seen in bench/run's drain rounds after the first). Without sorts the ordered index walk is
-- the plan, whatever the statistics say.
ALTER FUNCTION jobs_claim(text, int, int) SET enable_sort = off;
