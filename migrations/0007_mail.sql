-- E-mail (HSEA-012, HSEA-064): each tenant's branding and the outbox of messages.
--
-- Every message belongs to a tenant (row-level security as everywhere): every mail HSEA sends
-- today is about one tenant and carries that tenant's branding. A mail without a tenant (a
-- password reset before the tenant is known) will need SECURITY DEFINER functions like the
-- jobs_* ones; until then there is no crossing here.

-- A tenant's branding for its e-mails; NULL columns take the defaults of the HSEA_MAIL_*
-- settings.
CREATE TABLE tenant_branding (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  product_name text CHECK (length(product_name) BETWEEN 1 AND 100),
  logo_url text CHECK (logo_url ~ '^https://[^\s]+$' AND length(logo_url) <= 2000),
  primary_color text CHECK (primary_color ~ '^#[0-9a-f]{6}$'),
  footer text CHECK (length(footer) BETWEEN 1 AND 500),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_branding ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_branding FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_branding FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON tenant_branding TO hsea_app_privileges;

-- The outbox of messages, rendered when they are sent (mail::send, in the transaction of their
-- cause) and delivered by the job "mail.deliver". The Message-ID is made once, so every attempt
-- sends the same message. 'stored': no SMTP server was configured; kept for reading
-- (GET /api/dev/mail), never delivered.
CREATE TABLE mail_messages (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  template text NOT NULL CHECK (template ~ '^[a-z][a-z0-9_]{0,63}$'),
  from_name text NOT NULL DEFAULT '',
  from_address text NOT NULL CHECK (length(from_address) BETWEEN 3 AND 254),
  to_name text NOT NULL DEFAULT '',
  to_address text NOT NULL CHECK (length(to_address) BETWEEN 3 AND 254),
  subject text NOT NULL CHECK (length(subject) <= 1000),
  html text NOT NULL,
  text text NOT NULL,
  message_id text NOT NULL UNIQUE,
  status text NOT NULL CHECK (status IN ('queued', 'stored', 'sent', 'failed')),
  attempts int NOT NULL DEFAULT 0,
  last_error text CHECK (length(last_error) <= 2000),
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE mail_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE mail_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mail_messages FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE (status, attempts, last_error, sent_at) ON mail_messages
  TO hsea_app_privileges;
