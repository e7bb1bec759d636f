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
  // Another plan's price on the same meter: 50 included, then 2 cents a unit.
  const metered2 = await h.stripe.prices.create({
    product: product.id, currency: 'usd', billing_scheme: 'tiered', tiers_mode: 'graduated',
    tiers: [{ up_to: 50, unit_amount: 0 }, { up_to: 'inf', unit_amount: 2 }],
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
  return { flat, cheap, yearly, metered, metered2, clock, customer, pm, use };
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

test('update replaces, deletes and adds items; a deleted metered item bills none of its usage (classic mode)', async () => {
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
  // Stripe's classic billing mode ("Manage your usage-based billing setup"): after the deletion
  // the invoice reflects none of the item's usage, also not the 300 units used before it.
  const down = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: flatItem.id, price: t.cheap.id }, { id: meteredItem.id, deleted: true }],
    proration_behavior: 'none',
  });
  assert.deepEqual(down.items.data.map((i) => [i.id, i.price.id]), [[flatItem.id, t.cheap.id]]);
  const preview = await h.stripe.invoices.createPreview({ subscription: sub.id });
  assert.equal(preview.amount_due, 1900, 'the renewal ahead holds no usage of the deleted item');
  await t.use(500, 'after', kJan1 + 2 * 86400); // no metered item any more: not billed
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3600 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.amount_paid, 1900, 'the cheap price ahead; the usage before the removal is lost');
  assert.ok(inv.lines.data.every((l) => l.pricing?.price_details?.price !== t.metered.id));

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

test('billing_cycle_anchor=now ends the period: credit, the new period, the usage so far of the items it had', async () => {
  const t = await prices();
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  const [flatItem, meteredItem] = sub.items.data;
  await t.use(300, 'before', kJan1 + 60);
  const at = kJan1 + 10 * 86400;
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at });
  // Down to the cheap price, its metered item deleted, the period ended now: 21 of 31 days of
  // the flat price credited, the cheap price's new month, and the 300 units of the period so far
  // on the deleted item's price (200 past the tier at half a cent).
  const change = {
    items: [{ id: flatItem.id, price: t.cheap.id }, { id: meteredItem.id, deleted: true }],
    proration_behavior: 'always_invoice' as const, billing_cycle_anchor: 'now' as const,
  };
  const expected = [-Math.round((4900 * 21) / 31), 1900, 100];
  const preview = await h.stripe.invoices.createPreview({
    subscription: sub.id,
    subscription_details: { items: change.items, proration_behavior: change.proration_behavior,
                            billing_cycle_anchor: change.billing_cycle_anchor },
  });
  assert.deepEqual(preview.lines.data.map((l) => l.amount), expected);
  // The same through GET /v1/invoices/upcoming (HSEA's preview).
  const q = `subscription=${sub.id}&subscription_items[0][id]=${flatItem.id}` +
    `&subscription_items[0][price]=${t.cheap.id}&subscription_items[1][id]=${meteredItem.id}` +
    '&subscription_items[1][deleted]=true&subscription_proration_behavior=always_invoice' +
    '&subscription_billing_cycle_anchor=now';
  const r = await fetch(`${h.baseUrl}/v1/invoices/upcoming?${q}`, { headers: { Authorization: 'Bearer sk_test_x' } });
  const upcoming = await r.json();
  assert.deepEqual(upcoming.lines.data.map((l: any) => l.amount), expected);
  await assert.rejects(h.stripe.subscriptions.update(sub.id, { billing_cycle_anchor: 'later' as any }),
                       (e: any) => e.param === 'billing_cycle_anchor');
  const down = await h.stripe.subscriptions.update(sub.id, change);
  assert.deepEqual(down.items.data.map((i) => i.price.id), [t.cheap.id]);
  assert.equal(down.billing_cycle_anchor, at);
  assert.deepEqual([down.items.data[0].current_period_start, down.items.data[0].current_period_end],
                   [at, Date.UTC(2026, 1, 11) / 1000]);
  const inv = await h.stripe.invoices.retrieve(down.latest_invoice as string);
  assert.equal(inv.billing_reason, 'subscription_update');
  assert.deepEqual(inv.lines.data.map((l) => l.amount), expected);
  const usage = inv.lines.data[2];
  assert.deepEqual([usage.pricing?.price_details?.price, usage.quantity, usage.period.start, usage.period.end],
                   [t.metered.id, 300, kJan1, at]);
  assert.equal(inv.amount_due, 0, 'the credit exceeds the charges: it goes to the balance');

  // Back up (the metered item added: it bills from here on; the 40 units in between had no
  // metered item), then the metered price swapped with the period ended now: the old price bills
  // its usage so far at once, the new one only what comes after the swap.
  await t.use(40, 'between', at + 3600);
  const at2 = at + 5 * 86400;
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at2 });
  const up = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: flatItem.id, price: t.flat.id }, { price: t.metered.id }], proration_behavior: 'always_invoice',
  });
  assert.equal(up.items.data.length, 2);
  await t.use(120, 'on-metered', at2 + 60);
  const at3 = at2 + 86400;
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at3 });
  const swap = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: up.items.data[1].id, deleted: true }, { price: t.metered2.id }],
    proration_behavior: 'always_invoice', billing_cycle_anchor: 'now',
  });
  const swapped = await h.stripe.invoices.retrieve(swap.latest_invoice as string);
  const old = swapped.lines.data.find((l) => l.pricing?.price_details?.price === t.metered.id)!;
  assert.deepEqual([old.quantity, old.amount, old.period.start], [120, 10, at2]);
  assert.ok(swapped.lines.data.every((l) => l.pricing?.price_details?.price !== t.metered2.id),
            'the new metered price has no usage yet');
  await t.use(70, 'on-metered2', at3 + 60);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at3 + 31 * 86400 });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  const renewal = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(renewal.billing_reason, 'subscription_cycle');
  const lines = renewal.lines.data.filter((l) => l.pricing?.price_details?.price === t.metered2.id);
  assert.deepEqual(lines.map((l) => [l.quantity, l.amount]), [[70, 40]], 'only the usage since the swap');
  assert.ok(renewal.lines.data.every((l) => l.pricing?.price_details?.price !== t.metered.id));
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

test('cancel now: invoice_now bills the usage so far (prorate also credits the unused time); without it the usage is never billed', async () => {
  const t = await prices();
  const subscribe = () => h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  const sub = await subscribe();
  await t.use(300, 'cancel-1', kJan1 + 60);
  const at = kJan1 + 10 * 86400;
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at });
  await assert.rejects(h.stripe.subscriptions.cancel(sub.id, { prorate: true }), (e: any) => e.param === 'prorate');
  const canceled = await h.stripe.subscriptions.cancel(sub.id, { invoice_now: true });
  assert.equal(canceled.status, 'canceled');
  assert.notEqual(canceled.latest_invoice, sub.latest_invoice, 'a final invoice');
  const inv = await h.stripe.invoices.retrieve(canceled.latest_invoice as string);
  assert.equal(inv.status, 'paid');
  // Only the usage: 300 units, 200 past the tier at half a cent; no credit without prorate.
  assert.deepEqual(inv.lines.data.map((l) => [l.pricing?.price_details?.price, l.quantity, l.amount]),
                   [[t.metered.id, 300, 100]]);
  assert.deepEqual([inv.lines.data[0].period.start, inv.lines.data[0].period.end], [kJan1, at]);
  assert.equal(inv.amount_paid, 100);

  // With prorate: the flat price's unused 21 of 31 days credited beside the usage.
  const second = await subscribe();
  await t.use(150, 'cancel-2', at + 60);
  const at2 = at + 10 * 86400;
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at2 });
  const prorated = await h.stripe.subscriptions.cancel(second.id, { invoice_now: true, prorate: true });
  const final = await h.stripe.invoices.retrieve(prorated.latest_invoice as string);
  assert.deepEqual(final.lines.data.map((l) => l.amount), [-Math.round((4900 * 21) / 31), 25]);
  assert.equal(final.lines.data[1].quantity, 150);
  assert.equal(final.amount_due, 0, 'the credit exceeds the usage: it goes to the balance');

  // Without invoice_now: canceled, no invoice, the period's usage never billed.
  const third = await subscribe();
  await t.use(500, 'cancel-3', at2 + 60);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at2 + 86400 });
  const dropped = await h.stripe.subscriptions.cancel(third.id);
  assert.equal(dropped.status, 'canceled');
  assert.equal(dropped.latest_invoice, third.latest_invoice, 'no final invoice');
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: at2 + 40 * 86400 });
  const invoices = await h.stripe.invoices.list({ subscription: third.id });
  assert.deepEqual(invoices.data.map((i) => i.billing_reason), ['subscription_create']);
});

test('a subscription canceled at its period\'s end gets a final invoice of the period\'s metered usage', async () => {
  const t = await prices();
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  await h.stripe.subscriptions.update(sub.id, { cancel_at_period_end: true });
  await t.use(400, 'end-1', kJan1 + 3600);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3600 });
  const ended = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(ended.status, 'canceled');
  const inv = await h.stripe.invoices.retrieve(ended.latest_invoice as string);
  assert.equal(inv.billing_reason, 'subscription_cycle');
  // The usage of the period ended (300 past the tier at half a cent), no period ahead.
  assert.deepEqual(inv.lines.data.map((l) => [l.pricing?.price_details?.price, l.quantity, l.amount]),
                   [[t.metered.id, 400, 150]]);
  assert.deepEqual([inv.lines.data[0].period.start, inv.lines.data[0].period.end], [kJan1, kFeb1]);
  assert.equal(inv.amount_paid, 150);
});

test('a renewal invoice with metered usage stays a draft for the grace hour and bills the period\'s usage reported meanwhile', async () => {
  const t = await prices();
  const sub = await h.stripe.subscriptions.create({
    customer: t.customer.id, items: [{ price: t.flat.id }, { price: t.metered.id }], default_payment_method: t.pm.id,
  });
  await t.use(150, 'before', kJan1 + 60);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 60 });
  const renewed = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(renewed.items.data[0].current_period_start, kFeb1);
  const draft = await h.stripe.invoices.retrieve(renewed.latest_invoice as string);
  assert.equal(draft.status, 'draft', 'the renewal invoice is a draft during the grace period');
  assert.equal(draft.automatically_finalizes_at, kFeb1 + 3600);
  assert.equal(draft.amount_paid, 0);
  // Reported after the renewal: dated in the period ended (on this invoice), and in the new one.
  await t.use(50, 'late', kFeb1 - 1);
  await t.use(70, 'next', kFeb1);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3599 });
  assert.equal((await h.stripe.invoices.retrieve(draft.id as string)).status, 'draft');
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kFeb1 + 3600 });
  const inv = await h.stripe.invoices.retrieve(draft.id as string);
  assert.equal(inv.status, 'paid');
  assert.equal(inv.status_transitions.finalized_at, kFeb1 + 3600);
  const usage = inv.lines.data.find((l) => l.pricing?.price_details?.price === t.metered.id)!;
  assert.equal(usage.quantity, 200, 'the usage dated within January, also the late report');
  assert.equal(usage.amount, 50);
  assert.equal(inv.amount_paid, 4900 + 50);
  // After finalization a late report of January is billed nowhere; February's is on March's invoice.
  await t.use(1000, 'too late', kFeb1 - 2);
  await h.stripe.testHelpers.testClocks.advance(t.clock.id, { frozen_time: kMar1 + 3600 });
  const march = await h.stripe.invoices.retrieve((await h.stripe.subscriptions.retrieve(sub.id)).latest_invoice as string);
  assert.notEqual(march.id, inv.id);
  const next = march.lines.data.find((l) => l.pricing?.price_details?.price === t.metered.id)!;
  assert.equal(next.quantity, 70);
  await h.waitIdle();
  const events = h.received.filter((r) => r.event?.type === 'invoice.finalized' && (r.event.data.object as any).id === inv.id);
  assert.equal(events.length, 1, 'invoice.finalized once, at the end of the grace period');
});
