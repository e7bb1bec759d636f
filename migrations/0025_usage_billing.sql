-- Metered billing on Stripe (HSEA-026's "metered usage reported to Stripe"), the storage_bytes
-- gauge and its measurement.

-- Which of a plan's meters Stripe bills by usage: {"api_calls": {"unit_amount_decimal": "0.1"}}
-- charges each unit over the plan's included amount (its `limits` entry, free in the price's
-- first tier) at that price in the currency's minor units (0.1 cent per API call here). Such a
-- meter is billed, not refused: its limit warns but never answers 429.
ALTER TABLE plans ADD COLUMN metered jsonb NOT NULL DEFAULT '{}'
  CHECK (jsonb_typeof(metered) = 'object');
-- The metered prices made by `hsea billing sync-plans`: {"api_calls": {"month": "price_...",
-- "year": "price_..."}}.
ALTER TABLE plans ADD COLUMN stripe_metered_price_ids jsonb NOT NULL DEFAULT '{}'
  CHECK (jsonb_typeof(stripe_metered_price_ids) = 'object');
UPDATE plans SET metered = '{"api_calls": {"unit_amount_decimal": "0.1"}}'
  WHERE id IN ('pro', 'enterprise');

-- The Stripe meter of each HSEA meter (one per deployment, event_name hsea_<meter>), made by
-- `hsea billing sync-plans`. The platform's, like plans: not tenant-owned.
CREATE TABLE stripe_meters (
  meter text PRIMARY KEY CHECK (meter ~ '^[a-z][a-z0-9_.]{0,62}$'),
  event_name text NOT NULL UNIQUE,
  stripe_meter_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON stripe_meters TO hsea_app_privileges;

-- Per tenant and meter: what has been reported to Stripe. `reported_until` is the high-water
-- mark: every usage event recorded (recorded_at) before it is reported. A report is first
-- written here as pending (its window end, value and identifier), then sent, then confirmed by
-- moving the mark to pending_until in one transaction; a failed send is resent later with the
-- same identifier and value, which Stripe counts once.
CREATE TABLE usage_stripe_reports (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  meter text NOT NULL CHECK (meter ~ '^[a-z][a-z0-9_.]{0,62}$'),
  reported_until timestamptz NOT NULL,
  reported_total bigint NOT NULL DEFAULT 0 CHECK (reported_total >= 0),
  pending_until timestamptz,
  pending_value bigint CHECK (pending_value >= 0),
  pending_identifier text,
  attempts int NOT NULL DEFAULT 0,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, meter),
  CHECK ((pending_until IS NULL) = (pending_identifier IS NULL))
);
ALTER TABLE usage_stripe_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_stripe_reports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_stripe_reports FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON usage_stripe_reports TO hsea_app_privileges;

-- The tenants whose usage the reporting job sends: a Stripe customer and subscription on a plan
-- with metered meters (read across tenants; the job then works in each tenant's scope).
-- A meter without a Stripe meter yet (sync-plans not run) is left out.
CREATE FUNCTION usage_stripe_due() RETURNS TABLE (tenant_id uuid, stripe_customer_id text,
                                                  meter text, event_name text,
                                                  period_start timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT * FROM (
    SELECT s.tenant_id, s.stripe_customer_id, m.meter, sm.event_name, s.current_period_start
      FROM subscriptions s JOIN plans p ON p.id = s.plan_id
      CROSS JOIN LATERAL jsonb_object_keys(p.metered) AS m(meter)
      JOIN stripe_meters sm ON sm.meter = m.meter
     WHERE s.stripe_customer_id IS NOT NULL AND s.stripe_subscription_id IS NOT NULL
       AND s.status IN ('active', 'trialing', 'past_due')
    UNION
    -- A report already pending is still sent after a downgrade or a cancellation.
    SELECT r.tenant_id, s.stripe_customer_id, r.meter, sm.event_name, s.current_period_start
      FROM usage_stripe_reports r JOIN subscriptions s ON s.tenant_id = r.tenant_id
      JOIN stripe_meters sm ON sm.meter = r.meter
     WHERE r.pending_identifier IS NOT NULL AND s.stripe_customer_id IS NOT NULL) due
   ORDER BY tenant_id, meter
$$;
REVOKE ALL ON FUNCTION usage_stripe_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_stripe_due() TO hsea_app_privileges;

-- The latest value of each gauge meter of a tenant (storage_bytes): what the quota step (at each
-- flush) and the usage summary read. Every new value is also a usage event, for the history.
CREATE TABLE usage_gauges (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  meter text NOT NULL CHECK (meter ~ '^[a-z][a-z0-9_.]{0,62}$'),
  value bigint NOT NULL CHECK (value >= 0),
  measured_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, meter)
);
ALTER TABLE usage_gauges ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_gauges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_gauges FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON usage_gauges TO hsea_app_privileges;

-- storage_bytes: what each tenant stores in HSEA now, measured by the daily metering-storage job:
-- the sum of its rows' sizes (pg_column_size of the whole row) in every table with a tenant_id
-- column, plus the sum of `size_bytes` of any such table that has that column (a future file
-- store keeps each file's size there). Recorded as the tenant's gauge and one usage event each.
CREATE FUNCTION usage_storage_measure() RETURNS int
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public SET TimeZone = 'UTC'
AS $$
DECLARE
  t record;
  parts text[] := '{}';
  n int;
BEGIN
  PERFORM pg_advisory_xact_lock(7283410025);
  FOR t IN
    SELECT c.relname,
           EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = c.oid
                     AND s.attname = 'size_bytes' AND NOT s.attisdropped) AS has_size
      FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
     WHERE ns.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP
    parts := parts || format('SELECT tenant_id, sum(pg_column_size(x.*)%s)::bigint AS b '
                             'FROM %I x WHERE tenant_id IS NOT NULL GROUP BY tenant_id',
                             CASE WHEN t.has_size THEN ' + COALESCE(x.size_bytes, 0)' ELSE '' END,
                             t.relname);
  END LOOP;
  CREATE TEMP TABLE IF NOT EXISTS usage_storage (tenant_id uuid, b bigint) ON COMMIT DROP;
  TRUNCATE usage_storage;
  EXECUTE format('INSERT INTO usage_storage SELECT te.id, COALESCE(sum(s.b), 0) FROM tenants te '
                 'LEFT JOIN (%s) s ON s.tenant_id = te.id GROUP BY te.id',
                 array_to_string(parts, ' UNION ALL '));
  INSERT INTO usage_gauges (tenant_id, meter, value, measured_at)
    SELECT tenant_id, 'storage_bytes', b, now() FROM usage_storage
  ON CONFLICT (tenant_id, meter) DO UPDATE SET value = EXCLUDED.value, measured_at = now();
  INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at)
    SELECT tenant_id, uuid_v7(), 'storage_bytes', b, now() FROM usage_storage;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
REVOKE ALL ON FUNCTION usage_storage_measure() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_storage_measure() TO hsea_app_privileges;

-- The rollups of a gauge (storage_bytes) keep its peak of the day and month, not a sum of its
-- measurements; every other meter is summed as before.
CREATE OR REPLACE FUNCTION usage_rollup() RETURNS int
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
           (SELECT CASE WHEN d.meter = 'storage_bytes' THEN COALESCE(max(e.quantity), 0)
                        ELSE COALESCE(sum(e.quantity), 0) END
              FROM usage_events e
             WHERE e.tenant_id = d.tenant_id AND e.meter = d.meter
               AND e.occurred_at >= d.day AND e.occurred_at < d.day + interval '1 day')
      FROM usage_dirty d
  ON CONFLICT (tenant_id, granularity, meter, period_start)
    DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = now();
  INSERT INTO usage_rollups (tenant_id, granularity, meter, period_start, quantity)
    SELECT m.tenant_id, 'month', m.meter, m.month,
           (SELECT CASE WHEN m.meter = 'storage_bytes' THEN COALESCE(max(r.quantity), 0)
                        ELSE COALESCE(sum(r.quantity), 0) END
              FROM usage_rollups r
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
