-- Rate limiting (HSEA-031..035): platform staff, per-tenant rate-limit overrides and the
-- aggregated counts of limited requests.

-- Platform staff (operators): users who may call the operator API (/api/admin/...) and are
-- never rate limited. A user sees only their own row (authentication reads it with the
-- session); rows are written by `hsea staff grant|revoke` through the admin connection.
CREATE TABLE platform_staff (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE platform_staff ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_staff FORCE ROW LEVEL SECURITY;
CREATE POLICY own_staff_row ON platform_staff FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT ON platform_staff TO hsea_app_privileges;

-- A tenant's own rate for one rule (an enterprise contract, or an operator's override): it
-- replaces the route's and the plan's rate (see docs/ARCHITECTURE.md, Rate limits).
CREATE TABLE rate_limit_overrides (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  rule text NOT NULL CHECK (rule ~ '^[a-z][a-z0-9_.-]{0,62}$'),
  requests int NOT NULL CHECK (requests BETWEEN 1 AND 1000000000),
  period_seconds int NOT NULL CHECK (period_seconds BETWEEN 1 AND 86400),
  burst int NOT NULL DEFAULT 0 CHECK (burst BETWEEN 0 AND 1000000000),
  note text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
  updated_by uuid,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, rule)
);
ALTER TABLE rate_limit_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limit_overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rate_limit_overrides FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_overrides TO hsea_app_privileges;

-- Every tenant's overrides: each node keeps them in memory (no query per request) and reloads
-- them every few seconds; the operator lists them.
CREATE FUNCTION rate_limit_overrides_all()
  RETURNS TABLE (tenant_id uuid, rule text, requests int, period_seconds int, burst int,
                 note text, updated_by uuid, updated_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT tenant_id, rule, requests, period_seconds, burst, note, updated_by, updated_at
    FROM rate_limit_overrides ORDER BY tenant_id, rule
$$;

-- Limited requests per tenant, hour, rule and key kind, added up by each node's periodic flush
-- (never a row per request).
CREATE TABLE rate_limit_stats (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  hour timestamptz NOT NULL,
  rule text NOT NULL,
  key_kind text NOT NULL,
  limited bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, hour, rule, key_kind)
);
ALTER TABLE rate_limit_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limit_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rate_limit_stats FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_stats TO hsea_app_privileges;

-- The operator's report: every tenant's counts since p_hours ago.
CREATE FUNCTION rate_limit_report(p_hours int)
  RETURNS TABLE (tenant_id uuid, rule text, key_kind text, limited bigint, requests bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT tenant_id, rule, key_kind, sum(limited)::bigint, sum(requests)::bigint
    FROM rate_limit_stats
   WHERE hour >= date_trunc('hour', now()) - make_interval(hours => p_hours)
   GROUP BY tenant_id, rule, key_kind
   ORDER BY sum(limited) DESC, tenant_id, rule, key_kind
$$;

REVOKE ALL ON FUNCTION rate_limit_overrides_all(), rate_limit_report(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rate_limit_overrides_all(), rate_limit_report(int)
  TO hsea_app_privileges;
