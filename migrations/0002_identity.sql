-- Identity: users, memberships and roles, sessions and refresh tokens, API keys, audit log,
-- JWT signing keys. Tenant-owned tables follow the row-level-security rule of 0001.
-- User-owned tables (users, sessions, refresh_tokens) are scoped by app.user_id the same way.
-- The few look-ups that must cross the boundary before anyone is known (sign-in by e-mail,
-- refresh token, API key prefix, tenant by slug, a user's memberships) are SECURITY DEFINER
-- functions owned by the migration role: narrow, read-only, and the only way across.

CREATE EXTENSION IF NOT EXISTS citext;

ALTER TABLE tenants ADD COLUMN deletion_scheduled_at timestamptz;
ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;

CREATE TABLE users (
  id uuid PRIMARY KEY,
  email citext NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  password_hash text,
  email_verified boolean NOT NULL DEFAULT false,
  mfa_enabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON memberships TO hsea_app_privileges;

-- A user sees their own row, and the rows of members of the current tenant.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY self_or_tenant_member ON users FOR SELECT
  USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid
         OR id IN (SELECT user_id FROM memberships));
CREATE POLICY self_write ON users FOR ALL
  USING (id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON users TO hsea_app_privileges;

CREATE TABLE sessions (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind text NOT NULL CHECK (kind IN ('token', 'cookie')),
  active_tenant_id uuid,
  user_agent text NOT NULL DEFAULT '',
  ip text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY own_sessions ON sessions FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO hsea_app_privileges;

-- One row per refresh token ever issued; a session's tokens form one rotation family.
CREATE TABLE refresh_tokens (
  token_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  spent_at timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tokens ON refresh_tokens FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO hsea_app_privileges;

CREATE TABLE api_keys (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  prefix text NOT NULL UNIQUE,
  secret_hash text NOT NULL,
  scopes text[] NOT NULL,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  request_count bigint NOT NULL DEFAULT 0,
  revoked_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO hsea_app_privileges;

-- Append-only: the application may read and add entries, never change or remove them.
-- Retention is applied by `hsea audit prune` (owner role) and the server's daily job.
CREATE TABLE audit_logs (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  actor_type text NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'anonymous')),
  actor_id text NOT NULL DEFAULT '',
  action text NOT NULL,
  target_type text NOT NULL DEFAULT '',
  target_id text NOT NULL DEFAULT '',
  ip text NOT NULL DEFAULT '',
  user_agent text NOT NULL DEFAULT '',
  request_id text NOT NULL DEFAULT '',
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_logs_time ON audit_logs (tenant_id, created_at DESC, id DESC);
ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_logs FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON audit_logs TO hsea_app_privileges;

-- JWT signing keys: private keys sealed with a key derived from HSEA_SECRET_KEY.
CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  algorithm text NOT NULL CHECK (algorithm = 'ES256'),
  public_pem text NOT NULL,
  sealed_private text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz
);
GRANT SELECT, INSERT, UPDATE ON signing_keys TO hsea_app_privileges;

-- Look-ups across the boundary, before a tenant or user is known.
CREATE FUNCTION auth_user_by_email(p_email text)
  RETURNS TABLE (id uuid, password_hash text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT id, password_hash FROM users WHERE email = p_email::citext $$;

CREATE FUNCTION auth_refresh_token(p_hash text)
  RETURNS TABLE (session_id uuid, user_id uuid, expires_at timestamptz, spent_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT session_id, user_id, expires_at, spent_at FROM refresh_tokens
        WHERE token_hash = p_hash $$;

CREATE FUNCTION auth_api_key(p_prefix text)
  RETURNS TABLE (tenant_id uuid, id uuid, secret_hash text, scopes text[], usable boolean,
                 stale_last_used boolean, tenant_status text, seconds_left float8)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT k.tenant_id, k.id, k.secret_hash, k.scopes,
               k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()),
               k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds',
               t.status, EXTRACT(EPOCH FROM k.expires_at - now())::float8
          FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.prefix = p_prefix $$;

CREATE FUNCTION auth_tenant_by_slug(p_slug text)
  RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT id FROM tenants WHERE slug = p_slug AND status <> 'deleted' $$;

CREATE FUNCTION auth_user_tenants(p_user uuid)
  RETURNS TABLE (tenant_id uuid, slug text, name text, status text, role text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT t.id, t.slug, t.name, t.status, m.role FROM memberships m
        JOIN tenants t ON t.id = m.tenant_id
        WHERE m.user_id = p_user AND t.status <> 'deleted' ORDER BY t.created_at $$;

REVOKE ALL ON FUNCTION auth_user_by_email(text), auth_refresh_token(text), auth_api_key(text),
  auth_tenant_by_slug(text), auth_user_tenants(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_by_email(text), auth_refresh_token(text),
  auth_api_key(text), auth_tenant_by_slug(text), auth_user_tenants(uuid) TO hsea_app_privileges;

-- Tenants where the user is the only owner (account deletion is refused while any exists).
CREATE FUNCTION auth_sole_owner_tenants(p_user uuid)
  RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT m.tenant_id FROM memberships m
        WHERE m.user_id = p_user AND m.role = 'owner'
          AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = m.tenant_id
                          AND o.role = 'owner' AND o.user_id <> p_user) $$;
REVOKE ALL ON FUNCTION auth_sole_owner_tenants(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_sole_owner_tenants(uuid) TO hsea_app_privileges;

-- Retention of the audit log: the only way entries are ever removed.
-- Called by the application role (the server's daily job) it never removes entries younger
-- than 30 days, whatever it asks; the owner (`hsea audit prune` with the admin URL) may go
-- down to one day.
CREATE FUNCTION audit_prune(p_days int)
  RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ WITH gone AS (
          DELETE FROM audit_logs
           WHERE created_at < now() - make_interval(days => greatest(
                   p_days,
                   CASE WHEN pg_has_role(session_user, 'hsea_app_privileges', 'MEMBER')
                             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles
                                       WHERE rolname = session_user)
                        THEN 30 ELSE 1 END))
          RETURNING 1)
        SELECT count(*) FROM gone $$;
REVOKE ALL ON FUNCTION audit_prune(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_prune(int) TO hsea_app_privileges;

-- Tenants deleted by their owner are suspended for a grace period, then removed with all their
-- rows (memberships, API keys, audit log: ON DELETE CASCADE). Users stay: they are people who
-- may belong to other tenants.
CREATE FUNCTION tenants_purge_due()
  RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ WITH gone AS (DELETE FROM tenants
                       WHERE deletion_scheduled_at IS NOT NULL AND deletion_scheduled_at < now()
                       RETURNING 1)
        SELECT count(*) FROM gone $$;
REVOKE ALL ON FUNCTION tenants_purge_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_purge_due() TO hsea_app_privileges;
