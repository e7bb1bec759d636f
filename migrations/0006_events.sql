-- The transactional outbox: every domain event (member.role_changed, api_key.created, ...) is a
-- row written in the transaction of the change that causes it, and the jobs of the modules that
-- react to it (webhook deliveries, e-mail) are enqueued in the same transaction. So an event
-- exists exactly when its change committed, and what follows from it is never lost.
-- UUIDv7 with the sub-millisecond fraction in rand_a (RFC 9562, method 3), so rows one
-- transaction inserts in a row (an event and the next) sort in the order they were made.
CREATE OR REPLACE FUNCTION uuid_v7() RETURNS uuid
  LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  t numeric := extract(epoch FROM clock_timestamp()) * 1000;
  ms bigint := floor(t);
  sub int := floor((t - ms) * 4096);
  b bytea := uuid_send(gen_random_uuid());
BEGIN
  b := overlay(b PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6);
  b := set_byte(b, 6, 112 | (sub >> 8));
  b := set_byte(b, 7, sub & 255);
  RETURN encode(b, 'hex')::uuid;
END
$$;

CREATE TABLE events (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT uuid_v7(),
  type text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
  data jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
  actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous', 'job',
                                                 'stripe_webhook', 'operator')),
  actor_id text NOT NULL DEFAULT '',
  request_id text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_by_type ON events (tenant_id, type, id);
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- Append-only for the application, like the audit log.
GRANT SELECT, INSERT ON events TO hsea_app_privileges;

-- Events are kept as long as jobs: the daily jobs.prune removes older ones too.
CREATE FUNCTION events_prune(p_days int) RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH gone AS (
    DELETE FROM events WHERE created_at < now() - make_interval(days => GREATEST(p_days, 1))
    RETURNING 1)
  SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION events_prune(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION events_prune(int) TO hsea_app_privileges;

-- Priority per tenant (HSEA-038): an operator can move a tenant's jobs ahead of (or behind)
-- others with `hsea jobs priority`; it adds to the kind's priority at enqueue.
ALTER TABLE tenants ADD COLUMN job_priority smallint NOT NULL DEFAULT 0
  CHECK (job_priority BETWEEN -50 AND 50);

CREATE OR REPLACE FUNCTION jobs_enqueue(p_kind text, p_payload jsonb, p_priority int,
                                       p_delay_ms bigint, p_max_attempts int, p_unique_key text)
  RETURNS uuid
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH t AS (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid AS tenant)
  INSERT INTO jobs (tenant_id, kind, payload, priority, fair_tag, run_at, max_attempts, unique_key)
  SELECT t.tenant, p_kind, p_payload,
         LEAST(100, GREATEST(-100, p_priority + COALESCE(
           (SELECT job_priority FROM tenants WHERE id = t.tenant), 0))),
         jobs_fair_tag(t.tenant), now() + make_interval(secs => p_delay_ms / 1000.0),
         p_max_attempts, p_unique_key
    FROM t
  ON CONFLICT (tenant_id, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
  RETURNING id
$$;

CREATE OR REPLACE FUNCTION jobs_enqueue_many(p_kind text, p_payloads jsonb[], p_priority int,
                                             p_max_attempts int)
  RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH t AS (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid AS tenant),
       -- MATERIALIZED: inlined, the fair tag would be computed again for every row, each time
       -- scanning past the rows this statement already inserted (quadratic).
       base AS MATERIALIZED (SELECT tenant, jobs_fair_tag(tenant) AS tag,
                       LEAST(100, GREATEST(-100, p_priority + COALESCE(
                         (SELECT job_priority FROM tenants WHERE id = t.tenant), 0))) AS priority
                  FROM t),
       ins AS (
         INSERT INTO jobs (tenant_id, kind, payload, priority, fair_tag, max_attempts)
         SELECT base.tenant, p_kind, p.payload, base.priority, base.tag + p.n - 1, p_max_attempts
           FROM base, unnest(p_payloads) WITH ORDINALITY AS p(payload, n)
         RETURNING 1)
  SELECT count(*) FROM ins
$$;

-- Successful jobs that wrote nothing of their own are finished in batches: one statement for
-- every job a worker thread finished meanwhile. Returns the ids whose lease still held.
CREATE FUNCTION jobs_succeed(p_ids uuid[], p_tokens uuid[]) RETURNS SETOF uuid
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  UPDATE jobs j
     SET status = 'succeeded', last_error = NULL, lease_token = NULL, lease_expires_at = NULL,
         updated_at = now(), finished_at = now()
    FROM unnest(p_ids, p_tokens) AS l(id, token)
   WHERE j.id = l.id AND j.lease_token = l.token AND j.status = 'running'
  RETURNING j.id
$$;
REVOKE ALL ON FUNCTION jobs_succeed(uuid[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION jobs_succeed(uuid[], uuid[]) TO hsea_app_privileges;

-- Queue gauges read only what is waiting or running (both served by partial indexes): finished
-- jobs are counted by each process as they finish (hsea_jobs_runs_total), not by scanning.
CREATE OR REPLACE FUNCTION jobs_stats()
  RETURNS TABLE (kind text, status text, jobs bigint, oldest_due_seconds float8)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT kind, status, count(*),
         COALESCE(EXTRACT(epoch FROM now() - min(run_at) FILTER (
                    WHERE status = 'queued' AND run_at <= now())), 0)::float8
    FROM jobs
   WHERE status IN ('queued', 'running')
   GROUP BY kind, status
$$;

-- Pruning keeps the newest job of each schedule whatever its age: its unique key is what stops
-- the scheduler from enqueueing the same period again (a weekly job outlives a short retention).
CREATE OR REPLACE FUNCTION jobs_prune(p_days int) RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
AS $$
  WITH latest AS (
    SELECT DISTINCT ON (kind) id FROM jobs
     WHERE tenant_id IS NULL AND unique_key LIKE 'schedule:%'
     ORDER BY kind, id DESC),
  gone AS (
    DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')
       AND finished_at < now() - make_interval(days => GREATEST(p_days, 1))
       AND id NOT IN (SELECT id FROM latest)
    RETURNING 1)
  SELECT count(*) FROM gone
$$;
