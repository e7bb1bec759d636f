-- The rest of the personal data at rest (HSEA-047, docs/encryption.md): the e-mail outbox, the
-- audit entries and events that named addresses, and the password-reset job's payload.
--
-- mail_messages: the recipient (to_address, to_name) and the rendered message (subject, html,
-- text) are sealed by mail::send, a tenant's message under the tenant's key, a platform message
-- (tenant_id NULL) under its recipient's user key: user_id names that user (its key seals the
-- row; deleting the account shreds its mail). Sealed text is longer than the plain limits.
ALTER TABLE mail_messages DROP CONSTRAINT mail_messages_to_address_check;
ALTER TABLE mail_messages DROP CONSTRAINT mail_messages_subject_check;
ALTER TABLE mail_messages ADD COLUMN user_id uuid;

DROP FUNCTION mail_platform_insert(uuid, text, text, text, text, text, text, text, text, text,
                                   text);
CREATE FUNCTION mail_platform_insert(p_id uuid, p_user_id uuid, p_template text,
                                     p_from_name text, p_from_address text, p_to_name text,
                                     p_to_address text, p_subject text, p_html text, p_text text,
                                     p_message_id text, p_status text) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$ INSERT INTO mail_messages (tenant_id, id, user_id, template, from_name, from_address,
                                   to_name, to_address, subject, html, text, message_id, status)
        VALUES (NULL, p_id, p_user_id, p_template, p_from_name, p_from_address, p_to_name,
                p_to_address, p_subject, p_html, p_text, p_message_id, p_status) $$;
REVOKE ALL ON FUNCTION
  mail_platform_insert(uuid, uuid, text, text, text, text, text, text, text, text, text, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  mail_platform_insert(uuid, uuid, text, text, text, text, text, text, text, text, text, text)
  TO hsea_app_privileges;

-- Existing rows. SQL cannot seal (that needs HSEA_SECRET_KEY): a tenant's messages are sealed
-- by the next `hsea keys rotate-data` (a registered column, like users.email after 0016). A
-- platform message from before has no user_id, so rotation cannot know its key: once it is no
-- longer waiting for delivery its personal content is dropped here; one still queued is sent as
-- written, then dropped by the same statement in a later migration or by hand (documented).
UPDATE mail_messages
   SET to_address = 'redacted@invalid', to_name = '', subject = '', html = '', text = ''
 WHERE tenant_id IS NULL AND status <> 'queued';

-- Audit entries no longer name addresses (the entry's target, an invitation or a user, says
-- whose): the log outlives accounts, and an address in it would outlive their deletion.
UPDATE audit_logs SET metadata = metadata - 'email' - 'new_email' - 'old_email'
 WHERE action IN ('invitation.created', 'user.email_change_requested', 'user.email_changed')
   AND metadata ?| ARRAY['email', 'new_email', 'old_email'];

-- member.invited names the invitation and the role, not the address (a receiver reads it with
-- GET /api/invitations): the events and the webhook bodies made from them lose it.
UPDATE events SET data = data - 'email' WHERE type = 'member.invited' AND data ? 'email';
UPDATE webhook_deliveries SET body = (body::jsonb #- '{data,email}')::text
 WHERE event_type = 'member.invited' AND body::jsonb -> 'data' ? 'email';

-- A password-reset request's job carries the address and the client sealed (identity); the
-- payloads of finished ones from before are emptied (queued ones still run as written).
UPDATE jobs SET payload = '{}'
 WHERE kind = 'identity.password_reset' AND status NOT IN ('queued', 'running')
   AND payload ? 'email';
