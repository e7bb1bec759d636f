-- Background jobs (HSEA-038).
--
-- A job belongs to a tenant (tenant_id, row-level security as everywhere) or to the platform
-- (tenant_id NULL: scheduled maintenance). Jobs are enqueued inside the transaction of their
-- cause through jobs_enqueue(), which takes the tenant from app.tenant_id like every row does,
-- and claimed, renewed and finished through the jobs_* functions below: workers serve every
-- tenant, so those functions run as the schema owner and check the lease token instead of the
-- tenant (a worker that lost its lease cannot finish the job).
--
-- Fairness between tenants: every queued job carries a fair_tag, a virtual start time in
-- start-time fair queueing. A new job of tenant T gets max(V, T's largest queued tag) + 1, where
-- V is the smallest tag still queued (the queue's present). Workers claim in tag order, so a
-- tenant that enqueues 100 000 jobs takes tags far ahead while another tenant's next job is
-- tagged just after the present: the queue serves tenants round-robin. Priority comes first.

-- UUID version 7 (time-ordered) made in SQL, for rows the database inserts itself.
CREATE FUNCTION uuid_v7() RETURNS uuid
  LANGUAGE sql VOLATILE
AS $$
  SELECT encode(set_bit(set_bit(
           overlay(uuid_send(gen_random_uuid())
                   PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                                     FROM 3)
                   FROM 1 FOR 6),
           52, 1), 53, 1), 'hex')::uuid
$$;

CREATE TABLE jobs (
  tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT uuid_v7() PRIMARY KEY,
  kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,99}$'),
  payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
  priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
  fair_tag bigint NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  run_at timestamptz NOT NULL DEFAULT now(),
  attempts int NOT NULL DEFAULT 0,
  max_attempts int NOT NULL DEFAULT 10 CHECK (max_attempts BETWEEN 1 AND 100),
  last_error text CHECK (length(last_error) <= 2000),
  unique_key text CHECK (length(unique_key) BETWEEN 1 AND 200),
  lease_token uuid,
  lease_expires_at timestamptz,
  worker text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
-- Claim order: the ready queue by priority, then fair tag.
CREATE INDEX jobs_ready ON jobs (priority DESC, fair_tag) WHERE status = 'queued';
-- A tenant's jobs by status (the API's lists) and its largest queued tag.
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, status, id);
CREATE INDEX jobs_tenant_tags ON jobs (tenant_id, fair_tag) WHERE status = 'queued';
CREATE INDEX jobs_queue_present ON jobs (fair_tag) WHERE status = 'queued';
-- Leases to reap when a worker died.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
-- One job per key and tenant (the scheduler's periods, the outbox's events).
CREATE UNIQUE INDEX jobs_unique_key ON jobs (tenant_id, unique_key) NULLS NOT DISTINCT
  WHERE unique_key IS NOT NULL;

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- Tenant admins list, retry and cancel their own jobs; everything else goes through the
-- functions below.
GRANT SELECT, UPDATE (status, run_at, attempts, fair_tag, last_error, updated_at, finished_at)
  ON jobs TO hsea_app_privileges;

-- Idle workers wake when a job is committed (LISTEN hsea_jobs), not at the next poll.
CREATE FUNCTION jobs_notify() RETURNS trigger
  LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('hsea_jobs', '');
  RETURN NULL;
END
$$;
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
  FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
CREATE TRIGGER jobs_requeued AFTER UPDATE OF status ON jobs
  FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
  EXECUTE FUNCTION jobs_notify();

-- The next fair tag of a tenant's (or, for NULL, the platform's) queue.
CREATE FUNCTION jobs_fair_tag(p_tenant uuid) RETURNS bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT GREATEST(
           COALESCE((SELECT fair_tag FROM jobs WHERE status = 'queued'
                      ORDER BY fair_tag LIMIT 1), 0),
           COALESCE(CASE WHEN p_tenant IS NULL
                         THEN (SELECT fair_tag FROM jobs WHERE tenant_id IS NULL
                                 AND status = 'queued' ORDER BY fair_tag DESC LIMIT 1)
                         ELSE (SELECT fair_tag FROM jobs WHERE tenant_id = p_tenant
                                 AND status = 'queued' ORDER BY fair_tag DESC LIMIT 1) END, 0))
         + 1
$$;

-- Enqueues one job of the transaction's tenant (app.tenant_id; none: a platform job). Returns
-- the new id, or NULL when a job with the same unique_key exists for that tenant.
CREATE FUNCTION jobs_enqueue(p_kind text, p_payload jsonb, p_priority int, p_delay_ms bigint,
                             p_max_attempts int, p_unique_key text)
  RETURNS uuid
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  INSERT INTO jobs (tenant_id, kind, payload, priority, fair_tag, run_at, max_attempts, unique_key)
  VALUES (NULLIF(current_setting('app.tenant_id', true), '')::uuid, p_kind, p_payload,
          p_priority, jobs_fair_tag(NULLIF(current_setting('app.tenant_id', true), '')::uuid),
          now() + make_interval(secs => p_delay_ms / 1000.0), p_max_attempts, p_unique_key)
  ON CONFLICT (tenant_id, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
  RETURNING id
$$;

-- Enqueues many jobs of one kind for the transaction's tenant in one statement, with
-- consecutive fair tags (their tenant's queue keeps its order). Returns how many.
CREATE FUNCTION jobs_enqueue_many(p_kind text, p_payloads jsonb[], p_priority int,
                                  p_max_attempts int)
  RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH t AS (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid AS tenant),
       base AS (SELECT tenant, jobs_fair_tag(tenant) AS tag FROM t),
       ins AS (
         INSERT INTO jobs (tenant_id, kind, payload, priority, fair_tag, max_attempts)
         SELECT base.tenant, p_kind, p.payload, p_priority, base.tag + p.n - 1, p_max_attempts
           FROM base, unnest(p_payloads) WITH ORDINALITY AS p(payload, n)
         RETURNING 1)
  SELECT count(*) FROM ins
$$;

-- Claims up to p_limit due jobs for a worker, in priority and fair order, with a lease.
CREATE FUNCTION jobs_claim(p_worker text, p_limit int, p_lease_seconds int)
  RETURNS TABLE (id uuid, tenant_id uuid, kind text, payload jsonb, attempts int,
                 max_attempts int, lease_token uuid, created_at timestamptz, run_at timestamptz)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH next AS (
    SELECT j.id FROM jobs j
     WHERE j.status = 'queued' AND j.run_at <= now()
     ORDER BY j.priority DESC, j.fair_tag
     LIMIT p_limit
     FOR UPDATE SKIP LOCKED)
  UPDATE jobs j
     SET status = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),
         lease_expires_at = now() + make_interval(secs => p_lease_seconds), worker = p_worker,
         started_at = now(), updated_at = now()
    FROM next
   WHERE j.id = next.id
  RETURNING j.id, j.tenant_id, j.kind, j.payload, j.attempts, j.max_attempts, j.lease_token,
            j.created_at, j.run_at
$$;

-- Extends the leases a worker still holds; returns the ids it still holds.
CREATE FUNCTION jobs_renew(p_ids uuid[], p_tokens uuid[], p_lease_seconds int)
  RETURNS SETOF uuid
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  UPDATE jobs j SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
    FROM unnest(p_ids, p_tokens) AS l(id, token)
   WHERE j.id = l.id AND j.lease_token = l.token AND j.status = 'running'
  RETURNING j.id
$$;

-- Ends a job this lease still holds: succeeded, or failed with an error and either a retry
-- time (queued again behind its tenant's queue) or, after max_attempts or without a retry
-- time, failed for good. Returns the status it ended in. Raises SQLSTATE HS001 when the lease
-- is no longer the caller's, so a transaction that would finish the job rolls back whole.
CREATE FUNCTION jobs_finish(p_id uuid, p_token uuid, p_error text, p_retry_at timestamptz)
  RETURNS text
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
DECLARE
  v_status text;
BEGIN
  UPDATE jobs j
     SET status = CASE WHEN p_error IS NULL THEN 'succeeded'
                       WHEN p_retry_at IS NOT NULL AND j.attempts < j.max_attempts THEN 'queued'
                       ELSE 'failed' END,
         run_at = CASE WHEN p_error IS NOT NULL AND p_retry_at IS NOT NULL
                        AND j.attempts < j.max_attempts THEN p_retry_at ELSE j.run_at END,
         fair_tag = CASE WHEN p_error IS NOT NULL AND p_retry_at IS NOT NULL
                          AND j.attempts < j.max_attempts THEN jobs_fair_tag(j.tenant_id)
                         ELSE j.fair_tag END,
         last_error = left(p_error, 2000),
         lease_token = NULL, lease_expires_at = NULL, updated_at = now(),
         finished_at = CASE WHEN p_error IS NULL OR p_retry_at IS NULL
                             OR j.attempts >= j.max_attempts THEN now() END
   WHERE j.id = p_id AND j.lease_token = p_token AND j.status = 'running'
  RETURNING j.status INTO v_status;
  IF v_status IS NULL THEN
    RAISE EXCEPTION 'job % is no longer leased to this worker', p_id USING ERRCODE = 'HS001';
  END IF;
  RETURN v_status;
END
$$;

-- Jobs whose worker died (lease expired) go back to the queue, or fail after max_attempts.
CREATE FUNCTION jobs_reap() RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH expired AS (
    SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now()
       FOR UPDATE SKIP LOCKED),
  done AS (
    UPDATE jobs j
       SET status = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
           last_error = 'the worker stopped before finishing (lease expired)',
           finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
           lease_token = NULL, lease_expires_at = NULL, updated_at = now()
      FROM expired WHERE j.id = expired.id
    RETURNING 1)
  SELECT count(*) FROM done
$$;

-- When the next queued job becomes due (an idle worker sleeps until then at most).
CREATE FUNCTION jobs_next_due() RETURNS timestamptz
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT min(run_at) FROM jobs WHERE status = 'queued'
$$;

-- Counts for /metrics: jobs by kind and status (finished ones of the last day), and the lag
-- of the oldest due job.
CREATE FUNCTION jobs_stats()
  RETURNS TABLE (kind text, status text, jobs bigint, oldest_due_seconds float8)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT kind, status, count(*),
         COALESCE(EXTRACT(epoch FROM now() - min(run_at) FILTER (
                    WHERE status = 'queued' AND run_at <= now())), 0)::float8
    FROM jobs
   WHERE status IN ('queued', 'running') OR updated_at > now() - interval '1 day'
   GROUP BY kind, status
$$;

-- Finished jobs are kept for p_days (failed ones stay visible to their tenant until then).
CREATE FUNCTION jobs_prune(p_days int) RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH gone AS (
    DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')
       AND finished_at < now() - make_interval(days => GREATEST(p_days, 1))
    RETURNING 1)
  SELECT count(*) FROM gone
$$;

REVOKE ALL ON FUNCTION jobs_fair_tag(uuid), jobs_enqueue(text, jsonb, int, bigint, int, text),
  jobs_enqueue_many(text, jsonb[], int, int), jobs_claim(text, int, int),
  jobs_renew(uuid[], uuid[], int), jobs_finish(uuid, uuid, text, timestamptz), jobs_reap(),
  jobs_next_due(), jobs_stats(), jobs_prune(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_fair_tag(uuid),
  jobs_enqueue(text, jsonb, int, bigint, int, text), jobs_enqueue_many(text, jsonb[], int, int),
  jobs_claim(text, int, int), jobs_renew(uuid[], uuid[], int),
  jobs_finish(uuid, uuid, text, timestamptz), jobs_reap(), jobs_next_due(), jobs_stats(),
  jobs_prune(int) TO hsea_app_privileges;

-- Periodic tasks now run as scheduled jobs (one job per period, by unique key): the claim
-- table of the once-per-cluster tasks goes.
DROP TABLE periodic_task_runs;
