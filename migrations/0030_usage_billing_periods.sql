-- Metered usage lands on the invoice of the period it was used in (issue 12, HSEA-025/026).
--
-- Stripe bills a meter event on the invoice of the period its timestamp falls in, and keeps a
-- renewal invoice a draft for an hour in which the ended period's usage can still be reported.
-- So a report never crosses the subscription's period start (usage recorded before it is its
-- own event, dated the second before it), the renewal triggers a report, and while a period-end
-- plan change waits for its metered prices (the job billing.plan_items, run once the renewal
-- invoice is final) the new period's usage is held back and then dated after the swap.

-- Set with the renewal that applies a pending plan (billing's finish_pending_plan), cleared by
-- the job billing.plan_items once the subscription's metered items are the applied plan's: until
-- then usage of the new period would reach the old metered item, which the job deletes (in
-- Stripe's classic billing mode a deleted metered item bills none of its usage).
ALTER TABLE subscriptions ADD COLUMN metered_items_pending boolean NOT NULL DEFAULT false;
-- When that job put the applied plan's metered items on the Stripe subscription (Stripe's time,
-- the items' `created`): a new metered item bills only usage dated from then on.
ALTER TABLE subscriptions ADD COLUMN metered_items_at timestamptz;

-- The date a pending report is sent with: the last whole second before its window's end, or
-- the swap time above when that is later (fixed when the report is prepared, so a resend carries
-- the same date).
ALTER TABLE usage_stripe_reports ADD COLUMN pending_at timestamptz;

-- A swap is held for at most a day after the period start: billing.plan_items retries for about
-- five hours (15 attempts, the backoff capped at an hour); when it gave up, the old metered item
-- is still on the subscription and bills the usage, so holding it longer would only lose it.
-- As in 0025, plus: `period_end` (no window crosses it either: usage after it waits until HSEA
-- has applied the renewal, so that it is dated in the new period), `hold` (no usage past the
-- period start is reported: a metered swap is pending, or the plan no longer bills the meter)
-- and `not_before` (metered_items_at); and a
-- tenant whose usage before its current period start is not reported yet is due even when its
-- plan no longer bills the meter (a downgrade at the period's end: the ended period's usage still
-- reaches the renewal invoice, through the old metered item still on the subscription).
DROP FUNCTION usage_stripe_due();
CREATE FUNCTION usage_stripe_due() RETURNS TABLE (tenant_id uuid, stripe_customer_id text,
                                                  meter text, event_name text,
                                                  period_start timestamptz,
                                                  period_end timestamptz, hold boolean,
                                                  not_before timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$
  SELECT * FROM (
    SELECT s.tenant_id, s.stripe_customer_id, m.meter, sm.event_name, s.current_period_start,
           s.current_period_end,
           s.metered_items_pending AND s.current_period_start > now() - interval '1 day',
           s.metered_items_at
      FROM subscriptions s JOIN plans p ON p.id = s.plan_id
      CROSS JOIN LATERAL jsonb_object_keys(p.metered) AS m(meter)
      JOIN stripe_meters sm ON sm.meter = m.meter
     WHERE s.stripe_customer_id IS NOT NULL AND s.stripe_subscription_id IS NOT NULL
       AND s.status IN ('active', 'trialing', 'past_due')
    UNION
    -- A report already pending is still sent after a downgrade or a cancellation; so is the
    -- usage of the period ended, up to its end.
    SELECT r.tenant_id, s.stripe_customer_id, r.meter, sm.event_name, s.current_period_start,
           s.current_period_end,
           (s.metered_items_pending AND s.current_period_start > now() - interval '1 day')
           OR NOT (p.metered ? r.meter)
           OR s.status NOT IN ('active', 'trialing', 'past_due'), s.metered_items_at
      FROM usage_stripe_reports r JOIN subscriptions s ON s.tenant_id = r.tenant_id
      JOIN plans p ON p.id = s.plan_id
      JOIN stripe_meters sm ON sm.meter = r.meter
     WHERE s.stripe_customer_id IS NOT NULL
       AND (r.pending_identifier IS NOT NULL
            OR (r.reported_until < s.current_period_start AND s.stripe_subscription_id IS NOT NULL
                AND s.status IN ('active', 'trialing', 'past_due')))) due
   ORDER BY tenant_id, meter
$$;
REVOKE ALL ON FUNCTION usage_stripe_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_stripe_due() TO hsea_app_privileges;
