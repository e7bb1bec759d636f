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
