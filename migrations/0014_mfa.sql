-- Multi-factor sign-in (HSEA-018): TOTP (RFC 6238) and single-use recovery codes. All three
-- tables are user-owned (app.user_id), like sessions; a sign-in's second step finds its
-- challenge by token through auth_mfa_challenge(), before anyone is authenticated.

-- The user's TOTP secret, sealed with a key derived from HSEA_SECRET_KEY (never plain text).
-- confirmed_at is NULL while enrolment waits for its first code. last_step is the time step of
-- the last code accepted: a code is never accepted twice, nor one older than it.
CREATE TABLE user_totp (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  secret_sealed text NOT NULL,
  confirmed_at timestamptz,
  last_step bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE user_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_totp FORCE ROW LEVEL SECURITY;
CREATE POLICY own_totp ON user_totp FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON user_totp TO hsea_app_privileges;

-- Ten per user, shown once; only their SHA-256 is kept.
CREATE TABLE mfa_recovery_codes (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash text NOT NULL,
  used_at timestamptz,
  PRIMARY KEY (user_id, code_hash)
);
ALTER TABLE mfa_recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY own_codes ON mfa_recovery_codes FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_recovery_codes TO hsea_app_privileges;

-- A password accepted for an account with MFA: the second step presents the token (only its
-- SHA-256 is kept), within five minutes, at most five wrong codes, once.
CREATE TABLE mfa_challenges (
  token_hash text PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  active_tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,
  cookie boolean NOT NULL,
  attempts int NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
ALTER TABLE mfa_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY own_challenges ON mfa_challenges FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_challenges TO hsea_app_privileges;

CREATE FUNCTION auth_mfa_challenge(p_hash text)
  RETURNS TABLE (user_id uuid, active_tenant_id uuid, cookie boolean, usable boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT user_id, active_tenant_id, cookie,
               used_at IS NULL AND expires_at > now() AND attempts < 5
          FROM mfa_challenges WHERE token_hash = p_hash $$;
REVOKE ALL ON FUNCTION auth_mfa_challenge(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_mfa_challenge(text) TO hsea_app_privileges;

-- When the session's sign-in passed a second factor (NULL: password only).
ALTER TABLE sessions ADD COLUMN mfa_at timestamptz;
-- A tenant that requires MFA admits only sessions that passed one (API keys are not sessions).
ALTER TABLE tenants ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;
