-- CORS with per-tenant origins (HSEA-043) and CSRF tokens that rotate (HSEA-045).

-- A cookie session's CSRF token is a MAC of (session id, csrf_generation). Refreshing the
-- session (POST /api/auth/refresh with the cookie) adds one, so every earlier token of the
-- session stops working; a new sign-in is a new session and so a new token anyway.
ALTER TABLE sessions ADD COLUMN csrf_generation integer NOT NULL DEFAULT 0;

-- A tenant's settings (GET/PATCH /api/tenant/settings). One row per tenant, made on the first
-- PATCH; no row means the defaults. allowed_origins holds normalised origins
-- ("https://app.example.com", "http://localhost:5173"): the server validates and lower-cases
-- them, the CHECKs are the last guard.
CREATE TABLE tenant_settings (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  allowed_origins text[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(allowed_origins) <= 50 AND array_position(allowed_origins, NULL) IS NULL),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON tenant_settings TO hsea_app_privileges;

-- The CORS step runs at the edge, before anyone is known: from the Host's slug it needs the
-- tenant and its allowed origins (as JSON text). Narrow and read-only like auth_tenant_by_slug;
-- no row when the slug names no live tenant.
CREATE FUNCTION cors_tenant_origins(p_slug text)
  RETURNS TABLE (tenant_id uuid, allowed_origins text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT t.id, COALESCE(array_to_json(s.allowed_origins)::text, '[]')
      FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.id
     WHERE t.slug = p_slug AND t.status <> 'deleted'
  $$;
REVOKE ALL ON FUNCTION cors_tenant_origins(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cors_tenant_origins(text) TO hsea_app_privileges;
