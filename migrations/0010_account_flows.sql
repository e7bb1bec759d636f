-- Account flows (HSEA-015, HSEA-016): e-mail verification, password reset, e-mail change; and
-- platform mail (messages that belong to no tenant, e.g. a password reset for someone in
-- several tenants or none).

-- Single-use tokens mailed to a user. Only their SHA-256 is kept. `email` is the address the
-- token was mailed to (verification, reset) or the address to change to (change_email): a
-- token no longer matching the account's address is refused. User-owned (app.user_id), like
-- sessions: a token belongs to a person, who may be in several tenants or none. A token is
-- found before anyone is known through account_token() only.
CREATE TABLE account_tokens (
  token_hash text PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
  email citext NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
ALTER TABLE account_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tokens ON account_tokens FOR ALL
  USING (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid)
  WITH CHECK (user_id = NULLIF(current_setting('app.user_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON account_tokens TO hsea_app_privileges;

-- Read-only look-up by hash before anyone is known. Spending is a conditional UPDATE in the
-- user's own scope, so two concurrent uses cannot both win.
CREATE FUNCTION account_token(p_hash text)
  RETURNS TABLE (user_id uuid, purpose text, email text, expired boolean, used boolean,
                 current_email text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT t.user_id, t.purpose, t.email::text, t.expires_at <= now(),
               t.used_at IS NOT NULL, u.email::text
          FROM account_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = p_hash $$;
-- Tokens a week past their expiry are removed daily (identity's task account-token-prune).
CREATE FUNCTION account_tokens_prune() RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ WITH gone AS (DELETE FROM account_tokens WHERE expires_at < now() - interval '7 days'
                      RETURNING 1)
        SELECT count(*) FROM gone $$;
REVOKE ALL ON FUNCTION account_token(text), account_tokens_prune() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION account_token(text), account_tokens_prune() TO hsea_app_privileges;

-- Platform mail: mail_messages.tenant_id NULL. Tenant rows keep their policy unchanged; a
-- platform row matches no tenant's policy, so no tenant (and no scope without one) ever sees
-- it. The few statements on platform rows are the SECURITY DEFINER functions below, which
-- touch only rows whose tenant_id IS NULL.
ALTER TABLE mail_messages DROP CONSTRAINT mail_messages_pkey;
ALTER TABLE mail_messages ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE mail_messages ADD CONSTRAINT mail_messages_tenant_id_id_key UNIQUE (tenant_id, id);
CREATE UNIQUE INDEX mail_messages_platform_id ON mail_messages (id) WHERE tenant_id IS NULL;

CREATE FUNCTION mail_platform_insert(p_id uuid, p_template text, p_from_name text,
                                     p_from_address text, p_to_name text, p_to_address text,
                                     p_subject text, p_html text, p_text text,
                                     p_message_id text, p_status text) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ INSERT INTO mail_messages (tenant_id, id, template, from_name, from_address, to_name,
                                   to_address, subject, html, text, message_id, status)
        VALUES (NULL, p_id, p_template, p_from_name, p_from_address, p_to_name, p_to_address,
                p_subject, p_html, p_text, p_message_id, p_status) $$;
CREATE FUNCTION mail_platform_message(p_id uuid)
  RETURNS TABLE (from_name text, from_address text, to_name text, to_address text,
                 subject text, html text, text text, message_id text, status text, date bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT m.from_name, m.from_address, m.to_name, m.to_address, m.subject, m.html, m.text,
               m.message_id, m.status, extract(epoch FROM m.created_at)::bigint
          FROM mail_messages m WHERE m.tenant_id IS NULL AND m.id = p_id $$;
CREATE FUNCTION mail_platform_mark_sent(p_id uuid) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ UPDATE mail_messages SET status = 'sent', attempts = attempts + 1, last_error = NULL,
               sent_at = now() WHERE tenant_id IS NULL AND id = p_id $$;
CREATE FUNCTION mail_platform_record_failure(p_id uuid, p_error text, p_last boolean)
  RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ UPDATE mail_messages SET attempts = attempts + 1, last_error = left(p_error, 2000),
               status = CASE WHEN p_last THEN 'failed' ELSE status END
         WHERE tenant_id IS NULL AND id = p_id AND status <> 'sent' $$;
REVOKE ALL ON FUNCTION
  mail_platform_insert(uuid, text, text, text, text, text, text, text, text, text, text),
  mail_platform_message(uuid), mail_platform_mark_sent(uuid),
  mail_platform_record_failure(uuid, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  mail_platform_insert(uuid, text, text, text, text, text, text, text, text, text, text),
  mail_platform_message(uuid), mail_platform_mark_sent(uuid),
  mail_platform_record_failure(uuid, text, boolean) TO hsea_app_privileges;
