-- Trials that ended unpaid (HSEA-022): a trial HSEA started (HSEA_BILLING_TRIAL_PLAN) with no
-- Stripe subscription behind it has nobody at Stripe to end it, so a periodic job moves it to the
-- free plan. The job runs without a tenant: this function finds the tenants across tenants
-- (ids only, read-only), and each change is then made in the tenant's own scope under RLS.
-- Trials on a Stripe subscription are left to Stripe's events.
CREATE FUNCTION billing_expired_trials(p_limit integer) RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT tenant_id FROM subscriptions
        WHERE status = 'trialing' AND stripe_subscription_id IS NULL AND trial_end <= now()
        ORDER BY trial_end LIMIT p_limit $$;
REVOKE ALL ON FUNCTION billing_expired_trials(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_expired_trials(integer) TO hsea_app_privileges;

-- The job asks every minute: only HSEA's own open trials are indexed, so it reads none of the
-- other subscriptions.
CREATE INDEX subscriptions_open_trials ON subscriptions (trial_end)
  WHERE status = 'trialing' AND stripe_subscription_id IS NULL;
