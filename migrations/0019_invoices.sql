-- Invoices (HSEA-028) and dunning (HSEA-030). Invoices are mirrored from Stripe's invoice
-- objects (each webhook re-reads the invoice from Stripe, so the row is Stripe's latest state
-- whatever order events arrive in); HSEA renders their PDFs from these rows. All three tables
-- are tenant-owned (the rule of 0001's header).

CREATE TABLE invoices (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  stripe_invoice_id text NOT NULL CHECK (length(stripe_invoice_id) BETWEEN 1 AND 255),
  stripe_subscription_id text,
  -- Stripe numbers an invoice when it is finalized; drafts have none.
  number text,
  status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
  billing_reason text,
  currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  -- Minor units of currency, as Stripe sends them.
  subtotal bigint NOT NULL DEFAULT 0,
  tax bigint NOT NULL DEFAULT 0,
  total bigint NOT NULL DEFAULT 0,
  amount_due bigint NOT NULL DEFAULT 0,
  amount_paid bigint NOT NULL DEFAULT 0,
  amount_remaining bigint NOT NULL DEFAULT 0,
  attempt_count int NOT NULL DEFAULT 0,
  next_payment_attempt timestamptz,
  last_payment_error text,
  period_start timestamptz,
  period_end timestamptz,
  due_date timestamptz,
  paid_at timestamptz,
  hosted_invoice_url text,
  -- The customer's billing details as Stripe printed them on this invoice (a snapshot: a later
  -- change of address does not rewrite old invoices).
  customer_name text,
  customer_email text,
  customer_address text[] NOT NULL DEFAULT '{}',
  customer_tax_id text,
  stripe_created_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, stripe_invoice_id)
);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoices FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON invoices TO hsea_app_privileges;

-- An invoice's lines in Stripe's order; replaced whole on every mirror.
CREATE TABLE invoice_lines (
  tenant_id uuid NOT NULL,
  invoice_id uuid NOT NULL,
  position int NOT NULL CHECK (position >= 0),
  stripe_line_id text,
  description text NOT NULL DEFAULT '',
  quantity bigint NOT NULL DEFAULT 1,
  amount bigint NOT NULL,
  proration boolean NOT NULL DEFAULT false,
  period_start timestamptz,
  period_end timestamptz,
  PRIMARY KEY (tenant_id, invoice_id, position),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE invoice_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoice_lines FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, DELETE ON invoice_lines TO hsea_app_privileges;

-- A tenant in dunning: since when a payment failed (the first failure of the episode) and
-- when the grace period ends. Past suspend_at, writes answer 402 until a payment succeeds,
-- which deletes the row. One row per tenant: a second failed invoice extends nothing.
CREATE TABLE billing_dunning (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  invoice_id uuid NOT NULL,
  past_due_since timestamptz NOT NULL DEFAULT now(),
  suspend_at timestamptz NOT NULL,
  -- Set by the job that announces the suspension (audit, event); the refusal itself only
  -- compares suspend_at with the clock.
  suspended_at timestamptz,
  -- The invoice attempt the billing contacts were last mailed about: a failure re-delivered,
  -- or two events that re-read the same attempt, mail once.
  mailed_attempt int NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id),
  FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE billing_dunning ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_dunning FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_dunning FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON billing_dunning TO hsea_app_privileges;
