-- Invitations (HSEA-017): the way a user joins a tenant. An owner or admin invites an e-mail
-- address with a role; the invitee accepts with the mailed token, signed in (the invitation's
-- address must be theirs) or as a new user. Tokens are 32 random bytes, stored as their SHA-256
-- only, single use (a conditional UPDATE spends them), and expire. A resend replaces the hash,
-- so the earlier token stops working.
--
-- Also: account deletion (HSEA-020) is possible for an owner whose only sole-owned tenants are
-- scheduled for deletion, and it anonymises the user's addresses and user agents in the audit
-- log of every tenant.

CREATE TABLE invitations (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  email citext NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'billing')),
  token_hash text NOT NULL UNIQUE,
  invited_by uuid,  -- the inviting user; no foreign key: the invitation outlives their account
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  accepted_at timestamptz,
  accepted_by uuid,
  revoked_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
-- One open invitation per address and tenant (a second one is a 409; resend the first).
CREATE UNIQUE INDEX invitations_open_email ON invitations (tenant_id, email)
  WHERE accepted_at IS NULL AND revoked_at IS NULL;
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON invitations TO hsea_app_privileges;

-- The invitation behind a token, before its tenant is known (accepting): read-only, by hash.
CREATE FUNCTION invitation_by_token(p_hash text)
  RETURNS TABLE (tenant_id uuid, id uuid, email text, role text, state text, tenant_status text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT i.tenant_id, i.id, i.email::text, i.role,
               CASE WHEN i.accepted_at IS NOT NULL THEN 'used'
                    WHEN i.revoked_at IS NOT NULL THEN 'revoked'
                    WHEN i.expires_at <= now() THEN 'expired'
                    ELSE 'open' END,
               t.status
          FROM invitations i JOIN tenants t ON t.id = i.tenant_id
         WHERE i.token_hash = p_hash $$;
REVOKE ALL ON FUNCTION invitation_by_token(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invitation_by_token(text) TO hsea_app_privileges;

-- Tenants where the user is the only owner and which are not scheduled for deletion: account
-- deletion is refused while any exists (a tenant being deleted may lose its last owner).
CREATE OR REPLACE FUNCTION auth_sole_owner_tenants(p_user uuid)
  RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT m.tenant_id FROM memberships m JOIN tenants t ON t.id = m.tenant_id
        WHERE m.user_id = p_user AND m.role = 'owner' AND t.deletion_scheduled_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = m.tenant_id
                          AND o.role = 'owner' AND o.user_id <> p_user) $$;

-- The last-owner rule (0004) with the same exception: a tenant scheduled for deletion may lose
-- its last owner when that owner deletes their account (it is purged after its grace period).
CREATE OR REPLACE FUNCTION memberships_keep_an_owner()
  RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
DECLARE
  orphaned uuid;
BEGIN
  PERFORM 1 FROM tenants
    WHERE id IN (SELECT tenant_id FROM old_rows WHERE role = 'owner')
    ORDER BY id
    FOR NO KEY UPDATE;
  SELECT t.id INTO orphaned FROM tenants t
   WHERE t.id IN (SELECT tenant_id FROM old_rows WHERE role = 'owner')
     AND t.deletion_scheduled_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = t.id AND m.role = 'owner')
   ORDER BY t.id
   LIMIT 1;
  IF orphaned IS NOT NULL THEN
    RAISE EXCEPTION 'tenant % would be left without an owner', orphaned
      USING ERRCODE = 'integrity_constraint_violation',
            CONSTRAINT = 'memberships_keep_an_owner';
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION memberships_keep_an_owner() FROM PUBLIC;

-- Account deletion: the user's own addresses and user agents leave the audit log of every
-- tenant (the entries stay, with the user's id only), and so do those of failed sign-ins to
-- the account, which may be the user's own. The log is append-only for the
-- application, so this is the one change it may make, and only for the user of the
-- transaction (app.user_id), never for a user it names.
CREATE FUNCTION audit_anonymize_current_user()
  RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ WITH changed AS (
          UPDATE audit_logs SET ip = '', user_agent = ''
           WHERE ((actor_type = 'user'
                   AND actor_id = NULLIF(current_setting('app.user_id', true), ''))
                  OR (actor_type = 'anonymous' AND target_type = 'user'
                      AND target_id = NULLIF(current_setting('app.user_id', true), '')))
             AND (ip <> '' OR user_agent <> '')
          RETURNING 1)
        SELECT count(*) FROM changed $$;
REVOKE ALL ON FUNCTION audit_anonymize_current_user() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_anonymize_current_user() TO hsea_app_privileges;
