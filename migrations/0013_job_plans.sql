-- Queue statements written so that each has one plan whatever the statistics say. A queue's
-- statistics are always stale (a backlog arrives and drains between two ANALYZEs), and a SQL
-- function's LIMIT p_limit is planned as 10% of the table: jobs_claim hash-joined the whole
-- table (30 ms for 16 jobs out of 100 000), and jobs_succeed and jobs_renew walked every running
-- job through jobs_leases (estimated at one row). Now each row is found by primary key, and the
-- functions are PL/pgSQL so that each session plans them once, not at every call (planning was
-- half of a claim's time).
CREATE OR REPLACE FUNCTION jobs_claim(p_worker text, p_limit int, p_lease_seconds int)
  RETURNS TABLE (id uuid, tenant_id uuid, kind text, payload jsonb, attempts int,
                 max_attempts int, lease_token uuid, created_at timestamptz, run_at timestamptz)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
BEGIN
  RETURN QUERY
  UPDATE jobs j
     SET status = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
         lease_expires_at = now() + make_interval(secs => p_lease_seconds), worker = p_worker,
         started_at = now(), updated_at = now()
   WHERE j.id = ANY (ARRAY(
           SELECT n.id FROM jobs n
            WHERE n.status = 'queued' AND n.run_at <= now()
            ORDER BY n.priority DESC, n.fair_tag
            LIMIT p_limit
              FOR UPDATE SKIP LOCKED))
  RETURNING j.id, j.tenant_id, j.kind, j.payload, j.attempts, j.max_attempts, j.lease_token,
            j.created_at, j.run_at;
END
$$;

-- A lease token is set at the claim and cleared whenever the job leaves 'running', so a
-- matching token is the whole check.
CREATE OR REPLACE FUNCTION jobs_succeed(p_ids uuid[], p_tokens uuid[]) RETURNS SETOF uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
BEGIN
  RETURN QUERY
  UPDATE jobs j
     SET status = 'succeeded', last_error = NULL, lease_token = NULL, lease_expires_at = NULL,
         updated_at = now(), finished_at = now()
   WHERE j.id = ANY (p_ids) AND j.lease_token = p_tokens[array_position(p_ids, j.id)]
  RETURNING j.id;
END
$$;

CREATE OR REPLACE FUNCTION jobs_renew(p_ids uuid[], p_tokens uuid[], p_lease_seconds int)
  RETURNS SETOF uuid
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
BEGIN
  RETURN QUERY
  UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
   WHERE j.id = ANY (p_ids) AND j.lease_token = p_tokens[array_position(p_ids, j.id)]
  RETURNING j.id;
END
$$;

CREATE OR REPLACE FUNCTION jobs_reap() RETURNS bigint
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
DECLARE
  v_count bigint;
BEGIN
  WITH done AS (
    UPDATE jobs j
       SET status = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
           last_error = 'the worker stopped before finishing (lease expired)',
           finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
           lease_token = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE j.id = ANY (ARRAY(
             SELECT e.id FROM jobs e WHERE e.status = 'running' AND e.lease_expires_at < now()
                FOR UPDATE SKIP LOCKED))
    RETURNING 1)
  SELECT count(*) INTO v_count FROM done;
  RETURN v_count;
END
$$;

-- Claimed and finished jobs leave dead index entries that every claim walks past until VACUUM
-- removes them (a claim of 16 took 10 ms after 37 000 jobs had drained): vacuum the queue after
-- a few thousand changes rather than after a fifth of the table (at most once per
-- autovacuum_naptime, a minute by default; throttled as usual so requests keep their share).
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                      autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000);
