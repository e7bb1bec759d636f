-- Billing (HSEA-021..025): the platform's plans, each tenant's one current subscription with the
-- history of every change to it, and the Stripe events received (each stored once by its id).

-- Plans are the platform's price list, the same for every tenant: not tenant-owned.
-- `features` is an object of flags ({"webhooks": true, "sso": false}); `limits` an object of
-- non-negative integers whose documented keys are (docs/ARCHITECTURE.md, Billing):
--   api_calls            API requests per billing period
--   storage_bytes        stored file bytes
--   seats                members of the tenant
--   requests_per_second  the sustained request rate of the tenant (rate limiter)
--   burst                the requests the rate limiter admits at once above that rate
-- A key that is absent means no limit; later meters add their own keys.
CREATE TABLE plans (
  id text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9_-]{0,39}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
  currency text NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{3}$'),
  -- Prices in the currency's minor units (cents; yen have none).
  monthly_amount bigint NOT NULL CHECK (monthly_amount >= 0),
  yearly_amount bigint NOT NULL CHECK (yearly_amount >= 0),
  features jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(features) = 'object'),
  limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
  sort_order int NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
  -- Set by `hsea billing sync-plans`.
  stripe_product_id text,
  stripe_monthly_price_id text,
  stripe_yearly_price_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON plans TO hsea_app_privileges;

INSERT INTO plans (id, name, description, monthly_amount, yearly_amount, features, limits,
                   sort_order) VALUES
  ('free', 'Free', 'For trying HSEA out.', 0, 0,
   '{"webhooks": true, "sso": false, "audit_export": false, "custom_domains": false, "priority_support": false}',
   '{"api_calls": 10000, "storage_bytes": 1073741824, "seats": 3, "requests_per_second": 5, "burst": 20}',
   0),
  ('starter', 'Starter', 'For small teams.', 2900, 29000,
   '{"webhooks": true, "sso": false, "audit_export": false, "custom_domains": false, "priority_support": false}',
   '{"api_calls": 100000, "storage_bytes": 10737418240, "seats": 10, "requests_per_second": 20, "burst": 100}',
   1),
  ('pro', 'Pro', 'For growing companies.', 9900, 99000,
   '{"webhooks": true, "sso": true, "audit_export": true, "custom_domains": true, "priority_support": false}',
   '{"api_calls": 1000000, "storage_bytes": 107374182400, "seats": 50, "requests_per_second": 100, "burst": 500}',
   2),
  ('enterprise', 'Enterprise', 'For organisations with their own terms.', 49900, 499000,
   '{"webhooks": true, "sso": true, "audit_export": true, "custom_domains": true, "priority_support": true}',
   '{"api_calls": 10000000, "storage_bytes": 1099511627776, "seats": 500, "requests_per_second": 500, "burst": 2500}',
   3);

-- Every node keeps plans and subscriptions in its entitlement cache: a change tells them all
-- (LISTEN hsea_billing), when its transaction commits.
CREATE FUNCTION billing_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('hsea_billing', '');
  RETURN NULL;
END $$;
CREATE TRIGGER plans_notify AFTER INSERT OR UPDATE ON plans
  FOR EACH STATEMENT EXECUTE FUNCTION billing_notify();

-- One current subscription per tenant (the primary key). `pending_*` is a change that takes
-- effect at the period's end (a downgrade). Stripe's statuses are kept as Stripe names them.
CREATE TABLE subscriptions (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  plan_id text NOT NULL REFERENCES plans (id),
  billing_interval text NOT NULL DEFAULT 'month' CHECK (billing_interval IN ('month', 'year')),
  status text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled',
                                         'incomplete', 'incomplete_expired', 'unpaid', 'paused')),
  trial_end timestamptz,
  current_period_start timestamptz NOT NULL DEFAULT now(),
  current_period_end timestamptz,
  cancel_at_period_end boolean NOT NULL DEFAULT false,
  canceled_at timestamptz,
  pending_plan_id text REFERENCES plans (id),
  pending_interval text CHECK (pending_interval IN ('month', 'year')),
  stripe_customer_id text,
  stripe_subscription_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id),
  UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX subscriptions_by_customer ON subscriptions (stripe_customer_id);
ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscriptions FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON subscriptions TO hsea_app_privileges;
CREATE TRIGGER subscriptions_notify AFTER INSERT OR UPDATE ON subscriptions
  FOR EACH STATEMENT EXECUTE FUNCTION billing_notify();

-- Every change of a subscription, written by a trigger so no code path can skip it: the row as
-- it became, and what it was before (NULL for the first).
CREATE TABLE subscription_history (
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id uuid NOT NULL,
  subscription_id uuid NOT NULL,
  plan_id text NOT NULL,
  status text NOT NULL,
  previous_plan_id text,
  previous_status text,
  snapshot jsonb NOT NULL,
  previous jsonb,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE subscription_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscription_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscription_history FOR ALL
  USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON subscription_history TO hsea_app_privileges;

CREATE FUNCTION subscriptions_record_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - 'updated_at') = (to_jsonb(OLD) - 'updated_at') THEN
    RETURN NULL;  -- nothing changed (a replayed Stripe event)
  END IF;
  INSERT INTO subscription_history (tenant_id, id, subscription_id, plan_id, status,
                                    previous_plan_id, previous_status, snapshot, previous)
  VALUES (NEW.tenant_id, uuid_v7(), NEW.id, NEW.plan_id, NEW.status,
          CASE WHEN TG_OP = 'UPDATE' THEN OLD.plan_id END,
          CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
          to_jsonb(NEW), CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END);
  RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_history AFTER INSERT OR UPDATE ON subscriptions
  FOR EACH ROW EXECUTE FUNCTION subscriptions_record_history();

-- Stripe webhooks arrive without a tenant: the tenant of a Stripe customer, found across
-- tenants (read-only, one value).
CREATE FUNCTION billing_tenant_of_customer(p_customer text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT tenant_id FROM subscriptions WHERE stripe_customer_id = p_customer $$;
REVOKE ALL ON FUNCTION billing_tenant_of_customer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_tenant_of_customer(text) TO hsea_app_privileges;

-- Stripe's events, each stored once by its id when its signature checked out, then processed by
-- the job worker. Stripe's objects are not tenant data until a handler maps them to a tenant.
CREATE TABLE stripe_events (
  id text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
  type text NOT NULL,
  stripe_created timestamptz NOT NULL,
  payload jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  outcome text
);
GRANT SELECT, INSERT, UPDATE ON stripe_events TO hsea_app_privileges;

-- Tenants made before billing start on the free plan, as new ones do.
INSERT INTO subscriptions (tenant_id, id, plan_id, status, current_period_start)
  SELECT id, uuid_v7(), 'free', 'active', created_at FROM tenants;
