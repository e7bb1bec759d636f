// Subscriptions of several items: a flat (licensed) price and a tiered metered price together,
// from a subscription create and from a Checkout session of two line items; items replaced,
// deleted and added by subscription update; invoices billing the metered item from its meter's
// usage over the period by the price's graduated tiers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Stripe from 'stripe';

import { Harness, start } from './harness';

const kJan1 = Date.UTC(2026, 0, 1) / 1000;
const kFeb1 = Date.UTC(2026, 1, 1) / 1000;
const kMar1 = Date.UTC(2026, 2, 1) / 1000;

let h: Harness;
before(async () => {
  h = await start();
});
after(async () => h.close());

let n = 0;
async function prices() {
  const event = `items_calls_${++n}`;
  const meter = await h.stripe.billing.meters.create({
    display_name: 'calls', event_name: event, default_aggregation: { formula: 'sum' },
    customer_mapping: { event_payload_key: 'stripe_customer_id', type: 'by_id' },
    value_settings: { event_payload_key: 'value' },
  });
  const product = await h.stripe.products.create({ name: 'Pro' });
  const flat = await h.stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 4900, recurring: { interval: 'month' } });
  const cheap = await h.stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 1900, recurring: { interval: 'month' } });
  const yearly = await h.stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 49000, recurring: { interval: 'year' } });
  const metered = await h.stripe.prices.create({
    product: product.id, currency: 'usd', billing_scheme: 'tiered', tiers_mode: 'graduated',
    tiers: [{ up_to: 100, unit_amount: 0 }, { up_to: 'inf', unit_amount_decimal: Stripe.Decimal.from('0.5') }],
    recurring: { interval: 'month', usage_type: 'metered', meter: meter.id },
  });
  const clock = await h.stripe.testHelpers.testClocks.create({ frozen_time: kJan1 });
  const customer = await h.stripe.customers.create({ test_clock: clock.id });
  const pm = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const use = async (value: number, identifier: string, at: number) => {
    await h.stripe.billing.meterEvents.create({
      event_name: event, identifier, timestamp: at, payload: { stripe_customer_id: customer.id, value: String(value) },
    });
  };
  return { flat, cheap, yearly, metered, clock, customer, pm, use };
}

test('a subscription of a flat and a metered price: the flat one in advance, the usage past the tier in arrears', async () => {
  const t = await prices();
  await assert.rejects(h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id, quantity: 1 }],
  }), (e: any) => e.param === 'items[1][quantity]');
  await assert.rejects(h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.yearly.id }, { price: t.metered.id }],
  }), (e: any) => e.param === 'items' && /interval/.test(e.message));
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  assert.equal(sub.status, 'active');
  assert.deepEqual(sub.items.data.map((i) => i.price.id), [t.flat.id, t.metered.id]);
  assert.equal(sub.items.data[0].quantity, 1);
  assert.equal(sub.items.data[1].quantity, undefined, 'a metered item has no quantity');
  const first = await h.stripe.invoices.retrieve(sub.latest_invoice as string);
  assert.equal(first.amount_paid, 4900, 'only the flat price is due at once');
  assert.equal(first.lines.data.length, 2);

  await t.use(300, 'a', kJan1 + 60);
  await t.use(100, 'b', kJan1 + 120);
  await t.use(1000, 'c', kFeb1 + 60); // the next period's
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kJan1 + 86400 });
  const preview = await h.stripe.invoices.createPreview({ subscription: sub.id });
  assert.equal(preview.amount_due, 4900 + 150, 'the next period ahead plus 300 units past the 100 included');

  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3600 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.billing_reason, 'subscription_cycle');
  assert.equal(inv.amount_paid, 4900 + 150);
  const usage = inv.lines.data.find((l) => l.pricing?.price_details?.price === t.metered.id)!;
  assert.equal(usage.quantity, 400);
  assert.equal(usage.amount, 150);
  assert.deepEqual([usage.period.start, usage.period.end], [kJan1, kFeb1]);
  assert.equal(usage.parent?.subscription_item_details?.subscription_item, sub.items.data[1].id);
  const flatLine = inv.lines.data.find((l) => l.pricing?.price_details?.price === t.flat.id)!;
  assert.deepEqual([flatLine.period.start, flatLine.period.end], [kFeb1, kMar1]);
});

test('Checkout with two line items makes a subscription of two items', async () => {
  const t = await prices();
  await assert.rejects(h.stripe.checkout.sessions.create({
    mode: 'subscription', customer: t.customer.id, success_url: 'http://x/ok',
    line_items: [{ price: t.flat.id, quantity: 1 }, { price: t.metered.id, quantity: 2 }],
  }), (e: any) => e.param === 'line_items[1][quantity]');
  const session = await h.stripe.checkout.sessions.create({
    mode: 'subscription', customer: t.customer.id, success_url: 'http://x/ok',
    line_items: [{ price: t.flat.id, quantity: 1 }, { price: t.metered.id }],
  });
  assert.equal(session.amount_total, 4900);
  const done = await h.control('POST', `/checkout/${session.id}/complete`, {});
  assert.equal(done.status, 'complete');
  const sub = await h.stripe.subscriptions.retrieve(done.subscription);
  assert.deepEqual(sub.items.data.map((i) => [i.price.id, i.quantity]), [[t.flat.id, 1], [t.metered.id, undefined]]);
  const listed = await h.stripe.subscriptions.list({ price: t.metered.id });
  assert.deepEqual(listed.data.map((x) => x.id), [sub.id]);
});

test('update replaces, deletes and adds items; a removed metered item bills its usage until removal', async () => {
  const t = await prices();
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  const [flatItem, meteredItem] = sub.items.data;
  await t.use(300, 'before', kJan1 + 60);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kJan1 + 86400 });
  await assert.rejects(h.stripe.subscriptions.update(sub.id, { items: [{ id: 'si_nope', deleted: true }] }),
                       (e: any) => e.code === 'resource_missing' && e.param === 'items[0][id]');
  await assert.rejects(h.stripe.subscriptions.update(sub.id, { items: [{ id: meteredItem.id, quantity: 3 }] }),
                       (e: any) => e.param === 'items[0][quantity]');
  // Down to the cheap flat price without usage billing, from the next period (no proration).
  const down = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: flatItem.id, price: t.cheap.id }, { id: meteredItem.id, deleted: true }],
    proration_behavior: 'none',
  });
  assert.deepEqual(down.items.data.map((i) => [i.id, i.price.id]), [[flatItem.id, t.cheap.id]]);
  await t.use(500, 'after', kJan1 + 2 * 86400); // no metered item any more: not billed
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3600 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.amount_paid, 1900 + 100, 'the cheap price ahead plus 200 units used before the removal');
  const usage = inv.lines.data.find((l) => l.pricing?.price_details?.price === t.metered.id)!;
  assert.deepEqual([usage.quantity, usage.period.start, usage.period.end], [300, kJan1, kJan1 + 86400]);

  // Back up: the flat price replaced and the metered item added (no quantity), prorated at once.
  const up = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: flatItem.id, price: t.flat.id }, { price: t.metered.id }], proration_behavior: 'always_invoice',
  });
  assert.deepEqual(up.items.data.map((i) => [i.price.id, i.quantity]), [[t.flat.id, 1], [t.metered.id, undefined]]);
  const prorated = await h.stripe.invoices.retrieve(up.latest_invoice as string);
  assert.equal(prorated.billing_reason, 'subscription_update');
  assert.ok(prorated.amount_due > 0 && prorated.amount_due < 4900 - 1900, `prorated difference ${prorated.amount_due}`);
  assert.ok(prorated.lines.data.every((l) => l.pricing?.price_details?.price !== t.metered.id || l.amount === 0));
  await t.use(150, 'later', kFeb1 + 7200);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kMar1 + 3600 });
  const s2 = await h.stripe.subscriptions.retrieve(sub.id);
  const inv2 = await h.stripe.invoices.retrieve(s2.latest_invoice as string);
  assert.equal(inv2.amount_paid, 4900 + 25, 'the flat price ahead plus 50 units past the tier since the item was added');
});

test('an archived price is refused for a new item or a new price of an item; items that have it keep it', async () => {
  const t = await prices();
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  const [flatItem, meteredItem] = sub.items.data;
  await h.stripe.prices.update(t.cheap.id, { active: false });
  await h.stripe.prices.update(t.metered.id, { active: false });
  const inactive = (param: string) => (e: any) =>
    e.type === 'StripeInvalidRequestError' && e.param === param && /inactive/.test(e.message);
  await assert.rejects(h.stripe.subscriptions.update(sub.id, { items: [{ id: flatItem.id, price: t.cheap.id }] }),
                       inactive('items[0][price]'));
  await assert.rejects(h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }],
  }), inactive('items[1][price]'));
  await assert.rejects(h.stripe.checkout.sessions.create({
    mode: 'subscription', customer: t.customer.id, line_items: [{ price: t.cheap.id, quantity: 1 }],
    success_url: 'https://example.com/ok', cancel_url: 'https://example.com/back',
  }), inactive('line_items[0][price]'));
  // The metered item keeps its archived price through a change of the other item.
  await h.stripe.prices.update(t.cheap.id, { active: true });
  const down = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: flatItem.id, price: t.cheap.id }, { id: meteredItem.id, price: t.metered.id }],
    proration_behavior: 'none',
  });
  assert.deepEqual(down.items.data.map((i) => i.price.id), [t.cheap.id, t.metered.id]);
});
