// Usage-based billing: a meter, meter events (deduplicated by identifier), the meter's summary,
// the preview of the usage so far, and the renewal invoicing the usage of the ended period.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Stripe from 'stripe';

import { Harness, start } from './harness';

const kJan1 = Date.UTC(2026, 0, 1) / 1000;
const kFeb1 = Date.UTC(2026, 1, 1) / 1000;

let h: Harness;
before(async () => {
  h = await start();
});
after(async () => h.close());

test('metered price: usage is summed and billed in arrears at renewal', async () => {
  const meter = await h.stripe.billing.meters.create({
    display_name: 'API calls', event_name: 'api_calls', default_aggregation: { formula: 'sum' },
  });
  assert.equal(meter.customer_mapping.event_payload_key, 'stripe_customer_id');
  const product = await h.stripe.products.create({ name: 'API' });
  const price = await h.stripe.prices.create({
    product: product.id, currency: 'usd', unit_amount: 2,
    recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
  });
  await assert.rejects(h.stripe.prices.create({
    product: product.id, currency: 'usd', unit_amount: 2, recurring: { interval: 'month', usage_type: 'metered' },
  }), (e: any) => e.param === 'recurring[meter]');

  const clock = await h.stripe.testHelpers.testClocks.create({ frozen_time: kJan1 });
  const customer = await h.stripe.customers.create({ test_clock: clock.id });
  const pm = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const sub = await h.stripe.subscriptions.create({ customer: customer.id, items: [{ price: price.id }], default_payment_method: pm.id });
  assert.equal(sub.status, 'active');
  const first = await h.stripe.invoices.retrieve(sub.latest_invoice as string);
  assert.equal(first.amount_due, 0, 'nothing used yet');

  const send = (value: number, identifier: string, at: number) => h.stripe.billing.meterEvents.create({
    event_name: 'api_calls', identifier, timestamp: at,
    payload: { stripe_customer_id: customer.id, value: String(value) },
  });
  await send(100, 'e1', kJan1 + 3600);
  await send(250, 'e2', kJan1 + 7200);
  await send(250, 'e2', kJan1 + 7200); // the same identifier again: counted once
  await send(999, 'e3', kFeb1 + 10); // the next period
  const summary = await h.stripe.billing.meters.listEventSummaries(meter.id, {
    customer: customer.id, start_time: kJan1, end_time: kFeb1,
  });
  assert.equal(summary.data[0].aggregated_value, 350);

  await h.stripe.testHelpers.testClocks.advance(clock.id, { frozen_time: kJan1 + 86400 });
  const preview = await h.stripe.invoices.createPreview({ subscription: sub.id });
  assert.equal(preview.amount_due, 700);

  await h.stripe.testHelpers.testClocks.advance(clock.id, { frozen_time: kFeb1 + 3600 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.billing_reason, 'subscription_cycle');
  assert.equal(inv.amount_paid, 700);
  assert.deepEqual([inv.lines.data[0].period.start, inv.lines.data[0].period.end], [kJan1, kFeb1]);
  assert.equal(inv.lines.data[0].quantity, 350);
});

test('tiered metered price: the included amount is free, the units past it are charged', async () => {
  const meter = await h.stripe.billing.meters.create({
    display_name: 'HSEA api_calls', event_name: 'hsea_api_calls_tiered', default_aggregation: { formula: 'sum' },
    customer_mapping: { event_payload_key: 'stripe_customer_id', type: 'by_id' },
    value_settings: { event_payload_key: 'value' },
  });
  const product = await h.stripe.products.create({ name: 'Pro' });
  const price = await h.stripe.prices.create({
    product: product.id, currency: 'usd', billing_scheme: 'tiered', tiers_mode: 'graduated',
    tiers: [{ up_to: 100, unit_amount: 0 }, { up_to: 'inf', unit_amount_decimal: Stripe.Decimal.from('0.5') }],
    recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
  });
  assert.equal(price.billing_scheme, 'tiered');
  assert.equal(price.unit_amount, null);
  await assert.rejects(h.stripe.prices.create({
    product: product.id, currency: 'usd', billing_scheme: 'tiered', tiers_mode: 'graduated',
    tiers: [{ up_to: 'inf', unit_amount: 0 }, { up_to: 100, unit_amount: 1 }],
    recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
  }), (e: any) => e.param === 'tiers[0][up_to]');
  const listed = await h.stripe.billing.meters.list();
  assert.ok(listed.data.some((m) => m.id === meter.id));

  const clock = await h.stripe.testHelpers.testClocks.create({ frozen_time: kJan1 });
  const customer = await h.stripe.customers.create({ test_clock: clock.id });
  const pm = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const sub = await h.stripe.subscriptions.create({ customer: customer.id, items: [{ price: price.id }], default_payment_method: pm.id });
  for (const [value, id] of [[60, 't1'], [290, 't2'], [290, 't2']] as const) {
    await h.stripe.billing.meterEvents.create({
      event_name: 'hsea_api_calls_tiered', identifier: id, timestamp: kJan1 + 60,
      payload: { stripe_customer_id: customer.id, value: String(value) },
    });
  }
  const summary = await h.stripe.billing.meters.listEventSummaries(meter.id, {
    customer: customer.id, start_time: kJan1, end_time: kFeb1,
  });
  assert.equal(summary.data[0].aggregated_value, 350, 'the repeated identifier counts once');
  await h.stripe.testHelpers.testClocks.advance(clock.id, { frozen_time: kFeb1 + 3600 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.amount_paid, 125, '250 units past the 100 included, at half a cent');
  assert.equal(inv.lines.data[0].quantity, 350);
});
