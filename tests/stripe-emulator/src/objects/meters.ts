// Billing meters and meter events (usage-based prices: a price with recurring[usage_type]=metered
// and recurring[meter]), and the meter's event summaries. A metered price is billed in arrears:
// each renewal invoices the usage of the period that ended (lines.ts). An event whose
// identifier was seen before is not counted again (Stripe deduplicates by identifier).
import type Stripe from 'stripe';

import { allowOnly, hash, int, oneOf, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Route } from '../router';
import { newestFirst, paginate } from '../store';

function meter(ctx: Ctx): Stripe.Billing.Meter {
  const m = ctx.emu.store.meters.get(ctx.path[0]);
  if (!m) throw StripeError.missing('billing.meter', ctx.path[0], 'id');
  return m;
}

function create(ctx: Ctx): Stripe.Billing.Meter {
  const { store } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['display_name', 'event_name', 'default_aggregation', 'customer_mapping', 'value_settings', 'event_time_window']);
  const eventName = reqStr(p, 'event_name');
  if (Array.from(store.meters.values()).some((m) => m.event_name === eventName && m.status === 'active')) {
    throw StripeError.invalid(`An active meter with event_name ${eventName} already exists.`, 'event_name');
  }
  const agg = hash(p, 'default_aggregation');
  const formula = agg ? oneOf(agg, 'formula', ['sum', 'count', 'last'] as const, 'default_aggregation[formula]') : undefined;
  if (!formula) {
    throw StripeError.invalid('Missing required param: default_aggregation[formula].', 'default_aggregation[formula]', 'parameter_missing');
  }
  const cm = hash(p, 'customer_mapping');
  const vs = hash(p, 'value_settings');
  const now = store.now();
  const m: Stripe.Billing.Meter = {
    id: store.id('mtr'),
    object: 'billing.meter',
    created: now,
    customer_mapping: {
      event_payload_key: (cm && str(cm, 'event_payload_key', 'customer_mapping[event_payload_key]')) || 'stripe_customer_id',
      type: 'by_id',
    },
    default_aggregation: { formula },
    display_name: reqStr(p, 'display_name'),
    event_name: eventName,
    event_time_window: oneOf(p, 'event_time_window', ['day', 'hour'] as const) ?? null,
    livemode: false,
    status: 'active',
    status_transitions: { deactivated_at: null },
    updated: now,
    value_settings: { event_payload_key: (vs && str(vs, 'event_payload_key', 'value_settings[event_payload_key]')) || 'value' },
  };
  store.meters.set(m.id, m);
  return m;
}

function record(ctx: Ctx): Stripe.Billing.MeterEvent {
  const { store } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['event_name', 'payload', 'identifier', 'timestamp']);
  const eventName = reqStr(p, 'event_name');
  const m = Array.from(store.meters.values()).find((x) => x.event_name === eventName && x.status === 'active');
  if (!m) throw StripeError.invalid(`No active meter was found for event_name ${eventName}.`, 'event_name');
  const payload = hash(p, 'payload');
  if (!payload) throw StripeError.invalid('Missing required param: payload.', 'payload', 'parameter_missing');
  const customerKey = m.customer_mapping.event_payload_key;
  const customer = store.customer(reqStr(payload, customerKey, `payload[${customerKey}]`), `payload[${customerKey}]`).id;
  const valueKey = m.value_settings.event_payload_key;
  const value = m.default_aggregation.formula === 'count' ? 1 : int(payload, valueKey, `payload[${valueKey}]`);
  if (value === undefined) {
    throw StripeError.invalid(`Missing required param: payload[${valueKey}].`, `payload[${valueKey}]`, 'parameter_missing');
  }
  const identifier = str(p, 'identifier') || store.id('mev');
  const seen = store.meterEvents.find((e) => e.identifier === identifier && e.meter === m.id);
  if (seen) return seen.event;
  const timestamp = int(p, 'timestamp') ?? store.nowFor(customer);
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(payload)) if (typeof v === 'string') flat[k] = v;
  const event: Stripe.Billing.MeterEvent = {
    object: 'billing.meter_event',
    created: store.nowFor(customer),
    event_name: eventName,
    identifier,
    livemode: false,
    payload: flat,
    timestamp,
  };
  store.meterEvents.push({ meter: m.id, customer, value, timestamp, identifier, event });
  return event;
}

function summaries(ctx: Ctx) {
  const { store } = ctx.emu;
  const m = meter(ctx);
  const q = ctx.params;
  allowOnly(q, ['customer', 'start_time', 'end_time', 'value_grouping_window', 'limit', 'starting_after', 'ending_before']);
  const customer = store.customer(reqStr(q, 'customer')).id;
  const start = int(q, 'start_time');
  const end = int(q, 'end_time');
  if (start === undefined || end === undefined) {
    throw StripeError.invalid('Missing required param: start_time and end_time.', start === undefined ? 'start_time' : 'end_time', 'parameter_missing');
  }
  const events = store.meterEvents.filter(
    (e) => e.meter === m.id && e.customer === customer && e.timestamp >= start && e.timestamp < end);
  const value = m.default_aggregation.formula === 'count' ? events.length
    : m.default_aggregation.formula === 'last' ? (events.at(-1)?.value ?? 0)
    : events.reduce((a, e) => a + e.value, 0);
  const summary: Stripe.Billing.MeterEventSummary = {
    id: `mtrusg_${m.id}_${start}`,
    object: 'billing.meter_event_summary',
    aggregated_value: value,
    end_time: end,
    livemode: false,
    meter: m.id,
    start_time: start,
  };
  return paginate([summary], q, `/v1/billing/meters/${m.id}/event_summaries`);
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/billing/meters', handler: create },
  { method: 'GET', path: '/v1/billing/meters/:id', handler: meter },
  {
    method: 'GET',
    path: '/v1/billing/meters',
    handler: (ctx) => paginate(newestFirst(ctx.emu.store.meters), ctx.params, '/v1/billing/meters'),
  },
  { method: 'GET', path: '/v1/billing/meters/:id/event_summaries', handler: summaries },
  { method: 'POST', path: '/v1/billing/meter_events', handler: record },
];
