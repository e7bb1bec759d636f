-- Usage metering (HSEA-026) and quotas (HSEA-027). The event rows are the truth: the counters
-- in Redis (or in-process) are rebuilt from them, and the rollups are recomputed from them.

-- One row per recorded event: a product event (POST /api/usage/events) or one flush of a
-- node's in-process api_calls count. Partitioned by month on occurred_at; the partitions are
-- made ahead by usage_events_add_partitions (the daily job metering.partitions). A partition is
-- reached only through this table: the application role holds no rights on partitions, so the
-- parent's policy always applies (each partition also carries the same policy and is forced).
CREATE TABLE usage_events (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  meter text NOT NULL CHECK (meter ~ '^[a-z][a-z0-9_.]{0,62}$'),
  quantity bigint NOT NULL CHECK (quantity >= 0),
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  PRIMARY KEY (tenant_id, occurred_at, id)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX usage_events_recorded ON usage_events (recorded_at);
ALTER TABLE usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_events FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON usage_events TO hsea_app_privileges;

-- Idempotency keys of product events: a unique index on a partitioned table must hold the
-- partition key, so a retried event with another timestamp would not be caught there.
CREATE TABLE usage_event_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  idempotency_key text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idempotency_key)
);
ALTER TABLE usage_event_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_event_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_event_keys FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON usage_event_keys TO hsea_app_privileges;

-- Daily and monthly sums per meter (UTC days and months), written only by usage_rollup().
CREATE TABLE usage_rollups (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  granularity text NOT NULL CHECK (granularity IN ('day', 'month')),
  meter text NOT NULL,
  period_start timestamptz NOT NULL,
  quantity bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, granularity, meter, period_start)
);
ALTER TABLE usage_rollups ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_rollups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_rollups FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT ON usage_rollups TO hsea_app_privileges;

-- Up to where the rollup has read events (by recorded_at); one row.
CREATE TABLE usage_rollup_state (
  id int PRIMARY KEY CHECK (id = 1),
  watermark timestamptz NOT NULL
);
INSERT INTO usage_rollup_state VALUES (1, '-infinity');

-- The soft-limit warning of a meter in a period: one row, so one mail, per period.
CREATE TABLE usage_warnings (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  meter text NOT NULL,
  period_start timestamptz NOT NULL,
  used bigint NOT NULL,
  quota bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, meter, period_start)
);
ALTER TABLE usage_warnings ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_warnings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_warnings FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON usage_warnings TO hsea_app_privileges;

-- Enterprise overrides: a tenant's quota of a meter instead of its plan's (NULL: unlimited).
-- Set by the operator (`hsea usage quota`).
CREATE TABLE quota_overrides (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  meter text NOT NULL CHECK (meter ~ '^[a-z][a-z0-9_.]{0,62}$'),
  quota bigint CHECK (quota >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, meter)
);
ALTER TABLE quota_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE quota_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON quota_overrides FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON quota_overrides TO hsea_app_privileges;

-- Makes the monthly partitions from last month (late events) to p_ahead months ahead. Each is
-- forced under the parent's policy; the application role gets no rights on it.
CREATE FUNCTION usage_events_add_partitions(p_ahead int) RETURNS int
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public SET TimeZone = 'UTC'
AS $$
DECLARE
  first_month timestamptz := date_trunc('month', now()) - interval '1 month';
  m timestamptz;
  name text;
  made int := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(7283410021);
  FOR i IN 0 .. p_ahead + 1 LOOP
    m := first_month + make_interval(months => i);
    name := 'usage_events_' || to_char(m, 'YYYY_MM');
    CONTINUE WHEN to_regclass(name) IS NOT NULL;
    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                   name, m, m + interval '1 month');
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', name);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I FOR ALL '
                   'USING (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid) '
                   'WITH CHECK (tenant_id = NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid)',
                   name);
    made := made + 1;
  END LOOP;
  RETURN made;
END
$$;
REVOKE ALL ON FUNCTION usage_events_add_partitions(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_events_add_partitions(int) TO hsea_app_privileges;
SELECT usage_events_add_partitions(3);

-- Recomputes the daily and monthly sums of every (tenant, meter, day) that got an event since
-- the last run (a little before, for transactions that committed after it read), whole sums
-- each time, so running twice or concurrently changes nothing. Returns the days recomputed.
CREATE FUNCTION usage_rollup() RETURNS int
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public SET TimeZone = 'UTC'
AS $$
DECLARE
  since timestamptz;
  started timestamptz := now();
  days int;
BEGIN
  SELECT watermark - interval '10 minutes' INTO since FROM usage_rollup_state FOR UPDATE;
  CREATE TEMP TABLE IF NOT EXISTS usage_dirty (tenant_id uuid, meter text, day timestamptz)
    ON COMMIT DROP;
  TRUNCATE usage_dirty;
  INSERT INTO usage_dirty
    SELECT DISTINCT tenant_id, meter, date_trunc('day', occurred_at)
      FROM usage_events WHERE recorded_at >= since;
  GET DIAGNOSTICS days = ROW_COUNT;
  INSERT INTO usage_rollups (tenant_id, granularity, meter, period_start, quantity)
    SELECT d.tenant_id, 'day', d.meter, d.day,
           (SELECT COALESCE(sum(e.quantity), 0) FROM usage_events e
             WHERE e.tenant_id = d.tenant_id AND e.meter = d.meter
               AND e.occurred_at >= d.day AND e.occurred_at < d.day + interval '1 day')
      FROM usage_dirty d
  ON CONFLICT (tenant_id, granularity, meter, period_start)
    DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now();
  INSERT INTO usage_rollups (tenant_id, granularity, meter, period_start, quantity)
    SELECT m.tenant_id, 'month', m.meter, m.month,
           (SELECT COALESCE(sum(r.quantity), 0) FROM usage_rollups r
             WHERE r.tenant_id = m.tenant_id AND r.meter = m.meter AND r.granularity = 'day'
               AND r.period_start >= m.month AND r.period_start < m.month + interval '1 month')
      FROM (SELECT DISTINCT tenant_id, meter, date_trunc('month', day) AS month
              FROM usage_dirty) m
  ON CONFLICT (tenant_id, granularity, meter, period_start)
    DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now();
  UPDATE usage_rollup_state SET watermark = started;
  RETURN days;
END
$$;
REVOKE ALL ON FUNCTION usage_rollup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_rollup() TO hsea_app_privileges;
