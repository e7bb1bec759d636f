// Subscriptions over time on test clocks: proration previews (create_preview and the older
// GET /v1/invoices/upcoming) with exact amounts, upgrades, trials, renewals, failed payments with
// retries, recovery, cancellation at period end and reactivation.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';

import type Stripe from 'stripe';

import { Harness, catalog, start } from './harness';

const kDay = 86400;
const kJan1 = Date.UTC(2026, 0, 1) / 1000; // a 31-day month
const kFeb1 = Date.UTC(2026, 1, 1) / 1000;
const kMar1 = Date.UTC(2026, 2, 1) / 1000;

let h: Harness;
let prices: Awaited<ReturnType<typeof catalog>>;
before(async () => {
  h = await start();
  prices = await catalog(h.stripe);
});
after(async () => h.close());
beforeEach(async () => {
  await h.waitIdle();
  h.received.length = 0;
});

async function subscribed(price: string, card = 'pm_card_visa', extra: Partial<Stripe.SubscriptionCreateParams> = {}) {
  const clock = await h.stripe.testHelpers.testClocks.create({ frozen_time: kJan1 });
  const customer = await h.stripe.customers.create({ email: 'c@example.com', test_clock: clock.id });
  const pm = await h.stripe.paymentMethods.attach(card, { customer: customer.id });
  const sub = await h.stripe.subscriptions.create({
    customer: customer.id, items: [{ price }], default_payment_method: pm.id, ...extra,
  });
  return { clock, customer, pm, sub };
}

async function advance(clock: Stripe.TestHelpers.TestClock, to: number) {
  return h.stripe.testHelpers.testClocks.advance(clock.id, { frozen_time: to });
}

test('proration preview: exact by-second amounts, in both preview shapes', async () => {
  const { sub } = await subscribed(prices.starter.id);
  assert.equal(sub.status, 'active');
  assert.equal(sub.items.data[0].current_period_start, kJan1);
  assert.equal(sub.items.data[0].current_period_end, kFeb1);
  const at = kJan1 + 10 * kDay; // 21 of 31 days remain
  const preview = await h.stripe.invoices.createPreview({
    subscription: sub.id,
    subscription_details: { items: [{ id: sub.items.data[0].id, price: prices.monthly.id }], proration_date: at },
  });
  const amounts = preview.lines.data.map((l) => l.amount);
  const credit = -Math.round((1000 * 21) / 31); // -677
  const charge = Math.round((3000 * 21) / 31); // 2032
  assert.deepEqual(amounts, [credit, charge, 3000]);
  const prorations = preview.lines.data.filter((l) => l.parent?.subscription_item_details?.proration);
  assert.equal(prorations.reduce((a, l) => a + l.amount, 0), credit + charge);
  assert.equal(preview.amount_due, credit + charge + 3000);
  assert.match(preview.id as string, /^upcoming_in_/);
  assert.equal(preview.parent?.subscription_details?.subscription_proration_date, at);

  // The same through GET /v1/invoices/upcoming (clients pinned to an older API version).
  const q = new URLSearchParams({
    subscription: sub.id,
    'subscription_items[0][id]': sub.items.data[0].id,
    'subscription_items[0][price]': prices.monthly.id,
    subscription_proration_date: String(at),
  });
  const r = await fetch(`${h.baseUrl}/v1/invoices/upcoming?${q}`, { headers: { Authorization: 'Bearer sk_test_x' } });
  const upcoming = await r.json();
  assert.equal(r.status, 200);
  assert.deepEqual(upcoming.lines.data.map((l: any) => [l.amount, l.proration]), [[credit, true], [charge, true], [3000, false]]);
  // Previews store nothing.
  const invoices = await h.stripe.invoices.list({ subscription: sub.id });
  assert.equal(invoices.data.length, 1);
});

test('upgrade now invoices the proration; create_prorations waits for the renewal', async () => {
  const { clock, sub } = await subscribed(prices.starter.id);
  await advance(clock, kJan1 + 10 * kDay);
  const up = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: sub.items.data[0].id, price: prices.monthly.id }],
    proration_behavior: 'always_invoice',
    proration_date: kJan1 + 10 * kDay,
  });
  assert.equal(up.items.data[0].price.id, prices.monthly.id);
  const inv = await h.stripe.invoices.retrieve(up.latest_invoice as string);
  assert.equal(inv.billing_reason, 'subscription_update');
  assert.equal(inv.status, 'paid');
  assert.equal(inv.amount_paid, -677 + 2032);

  // Back down with create_prorations: the credit waits for February's invoice.
  await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: sub.items.data[0].id, price: prices.starter.id }],
    proration_date: kJan1 + 10 * kDay,
  });
  await advance(clock, kFeb1 + 3600);
  const renewed = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(renewed.items.data[0].current_period_start, kFeb1);
  assert.equal(renewed.items.data[0].current_period_end, kMar1);
  const feb = await h.stripe.invoices.retrieve(renewed.latest_invoice as string);
  assert.equal(feb.billing_reason, 'subscription_cycle');
  assert.deepEqual(feb.lines.data.map((l) => l.amount), [-2032, 677, 1000]);
  assert.equal(feb.total, -355);
  assert.equal(feb.amount_due, 0, 'a negative total becomes a credit');
  const customer = (await h.stripe.customers.retrieve(feb.customer as string)) as Stripe.Customer;
  assert.equal(customer.balance, -355);
  // March's invoice uses the credit first.
  await advance(clock, kMar1 + 3600);
  const mar = await h.stripe.invoices.retrieve((await h.stripe.subscriptions.retrieve(sub.id)).latest_invoice as string);
  assert.equal(mar.total, 1000);
  assert.equal(mar.amount_due, 645);
});

test('changing the interval restarts the cycle and charges at once', async () => {
  const { clock, sub } = await subscribed(prices.monthly.id);
  await advance(clock, kJan1 + 10 * kDay);
  const up = await h.stripe.subscriptions.update(sub.id, { items: [{ id: sub.items.data[0].id, price: prices.yearly.id }] });
  const item = up.items.data[0];
  assert.equal(item.current_period_start, kJan1 + 10 * kDay);
  assert.equal(item.current_period_end, Date.UTC(2027, 0, 11) / 1000);
  const inv = await h.stripe.invoices.retrieve(up.latest_invoice as string);
  assert.deepEqual(inv.lines.data.map((l) => l.amount), [-2032, 30000]);
});

test('a trial ends on the clock: trialing -> active with the first charge', async () => {
  const { clock, sub } = await subscribed(prices.monthly.id, 'pm_card_visa', { trial_period_days: 14 });
  assert.equal(sub.status, 'trialing');
  assert.equal(sub.trial_end, kJan1 + 14 * kDay);
  const first = await h.stripe.invoices.retrieve(sub.latest_invoice as string);
  assert.equal(first.amount_due, 0);
  assert.equal(first.status, 'paid');
  await advance(clock, kJan1 + 15 * kDay);
  const now = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(now.status, 'active');
  assert.equal(now.items.data[0].current_period_start, kJan1 + 14 * kDay);
  const inv = await h.stripe.invoices.retrieve(now.latest_invoice as string);
  assert.equal(inv.amount_paid, 3000);
  await h.waitIdle();
  const warned = h.received.filter((r) => r.event?.type === 'customer.subscription.trial_will_end');
  assert.equal(warned.length, 1);
  assert.equal(warned[0].event!.created, kJan1 + 11 * kDay, 'three days before the trial ends');
  const updated = h.received.filter((r) => r.event?.type === 'customer.subscription.updated');
  assert.ok(updated.some((r) => (r.event!.data.previous_attributes as any)?.status === 'trialing'));
});

test('failed renewal: past_due, retries on schedule, recovery when the card works again', async () => {
  const { clock, customer, sub } = await subscribed(prices.monthly.id);
  await h.control('POST', `/customers/${customer.id}/charges`, { outcome: 'fail', count: 2 });
  await advance(clock, kFeb1 + 60);
  let s = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(s.status, 'past_due');
  const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
  assert.equal(inv.status, 'open');
  assert.equal(inv.attempt_count, 1);
  assert.equal(inv.next_payment_attempt, kFeb1 + 3 * kDay);
  // The first retry (day 3) fails too; the second (day 8) succeeds.
  await advance(clock, kFeb1 + 4 * kDay);
  assert.equal((await h.stripe.invoices.retrieve(inv.id as string)).attempt_count, 2);
  assert.equal((await h.stripe.subscriptions.retrieve(sub.id)).status, 'past_due');
  await advance(clock, kFeb1 + 9 * kDay);
  const paid = await h.stripe.invoices.retrieve(inv.id as string);
  assert.equal(paid.status, 'paid');
  assert.equal(paid.attempt_count, 3);
  s = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(s.status, 'active');
  await h.waitIdle();
  const types = h.received.map((r) => r.event?.type);
  assert.equal(types.filter((t) => t === 'invoice.payment_failed').length, 2);
  assert.ok(types.includes('invoice.paid'));
});

test('a failing card: every retry fails, then the final status (canceled, or unpaid)', async () => {
  const { clock, sub } = await subscribed(prices.monthly.id);
  const { customer } = { customer: sub.customer as string };
  const bad = await h.stripe.paymentMethods.attach('pm_card_chargeCustomerFail', { customer });
  await h.stripe.subscriptions.update(sub.id, { default_payment_method: bad.id });
  await advance(clock, kFeb1 + 16 * kDay);
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(s.status, 'canceled');
  assert.equal(s.cancellation_details?.reason, 'payment_failed');
  const inv = await h.stripe.invoices.list({ subscription: sub.id, status: 'open' });
  assert.equal(inv.data[0].attempt_count, 4);
  assert.equal(inv.data[0].next_payment_attempt, null);

  await h.control('POST', '/dunning', { retry_days: [1], final_status: 'unpaid' });
  const other = await subscribed(prices.monthly.id, 'pm_card_chargeCustomerFail', { payment_behavior: 'allow_incomplete' });
  assert.equal(other.sub.status, 'incomplete', 'the first charge failed');
  // Paying by hand with a good card completes it.
  const good = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: other.customer.id });
  const paid = await h.stripe.invoices.pay(other.sub.latest_invoice as string, { payment_method: good.id });
  assert.equal(paid.status, 'paid');
  assert.equal((await h.stripe.subscriptions.retrieve(other.sub.id)).status, 'active');
  await h.stripe.subscriptions.update(other.sub.id, { default_payment_method: other.pm.id });
  await advance(other.clock, kFeb1 + 2 * kDay);
  assert.equal((await h.stripe.subscriptions.retrieve(other.sub.id)).status, 'unpaid');
  await h.control('POST', '/dunning', { retry_days: [3, 5, 7], final_status: 'canceled' });
  // A manual attempt that is declined answers 402 card_error.
  const open = await h.stripe.invoices.list({ subscription: other.sub.id, status: 'open' });
  await assert.rejects(h.stripe.invoices.pay(open.data[0].id as string), (e: any) => e.statusCode === 402 && e.code === 'card_declined');
});

test('cancel at period end, reactivate, cancel again and let it end; cancel now', async () => {
  const { clock, sub } = await subscribed(prices.monthly.id);
  let s = await h.stripe.subscriptions.update(sub.id, { cancel_at_period_end: true });
  assert.equal(s.cancel_at_period_end, true);
  assert.equal(s.cancel_at, kFeb1);
  s = await h.stripe.subscriptions.update(sub.id, { cancel_at_period_end: false });
  assert.equal(s.cancel_at, null);
  await h.stripe.subscriptions.update(sub.id, { cancel_at_period_end: true });
  await advance(clock, kFeb1 + 60);
  s = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(s.status, 'canceled');
  assert.equal(s.ended_at, kFeb1);
  await assert.rejects(h.stripe.subscriptions.update(sub.id, { cancel_at_period_end: false }), (e: any) => e.statusCode === 400);

  const other = await subscribed(prices.monthly.id);
  const canceled = await h.stripe.subscriptions.cancel(other.sub.id);
  assert.equal(canceled.status, 'canceled');
  await h.waitIdle();
  assert.ok(h.received.some((r) => r.event?.type === 'customer.subscription.deleted' &&
    (r.event.data.object as Stripe.Subscription).id === other.sub.id));
});

test('checkout with a declined card leaves the session open', async () => {
  const customer = await h.stripe.customers.create({ email: 'd@example.com' });
  const s = await h.stripe.checkout.sessions.create({
    mode: 'subscription', customer: customer.id, line_items: [{ price: prices.monthly.id, quantity: 1 }],
    success_url: 'http://app.example/ok',
  });
  const page = await fetch(`${s.url}?card=pm_card_chargeCustomerFail`, { redirect: 'manual' });
  assert.equal(page.status, 402);
  assert.equal((await h.stripe.checkout.sessions.retrieve(s.id)).status, 'open');
  assert.equal((await h.stripe.subscriptions.list({ customer: customer.id })).data.length, 0);
});

test('the default clock (customers without a test clock) moves with /_emulator/time/advance', async () => {
  const customer = await h.stripe.customers.create({ email: 'e@example.com' });
  const pm = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
  const sub = await h.stripe.subscriptions.create({ customer: customer.id, items: [{ price: prices.monthly.id }], default_payment_method: pm.id });
  const end = sub.items.data[0].current_period_end;
  await h.control('POST', '/time/advance', { seconds: 40 * kDay });
  const s = await h.stripe.subscriptions.retrieve(sub.id);
  assert.equal(s.items.data[0].current_period_start, end);
  assert.equal((await h.stripe.invoices.list({ subscription: sub.id })).data.length, 2);
});

test('previews of a change invoiced at once: always_invoice, a new interval; none drops the credit', async () => {
  const { sub } = await subscribed(prices.starter.id);
  const at = kJan1 + 10 * kDay;
  const item = sub.items.data[0].id;
  const now = await h.stripe.invoices.createPreview({
    subscription: sub.id,
    subscription_details: { items: [{ id: item, price: prices.monthly.id }], proration_date: at, proration_behavior: 'always_invoice' },
  });
  assert.deepEqual(now.lines.data.map((l) => l.amount), [-677, 2032]);
  const none = await h.stripe.invoices.createPreview({
    subscription: sub.id,
    subscription_details: { items: [{ id: item, price: prices.monthly.id }], proration_date: at, proration_behavior: 'none' },
  });
  assert.deepEqual(none.lines.data.map((l) => l.amount), [3000], 'only the next period at the new price');
  const yearly = await h.stripe.invoices.createPreview({
    subscription: sub.id,
    subscription_details: { items: [{ id: item, price: prices.yearly.id }], proration_date: at },
  });
  assert.deepEqual(yearly.lines.data.map((l) => l.amount), [-677, 30000]);
  // The update itself with `none` and a new interval: the new year invoiced now, no credit.
  const up = await h.stripe.subscriptions.update(sub.id, {
    items: [{ id: item, price: prices.yearly.id }], proration_behavior: 'none',
  });
  const inv = await h.stripe.invoices.retrieve(up.latest_invoice as string);
  assert.deepEqual(inv.lines.data.map((l) => l.amount), [30000]);
  // DELETE with parameters in the body (how the SDK sends them) is understood.
  const canceled = await h.stripe.subscriptions.cancel(sub.id, { invoice_now: false, prorate: false });
  assert.equal(canceled.status, 'canceled');
});

test('an open invoice can be voided or marked uncollectible (and then still paid)', async () => {
  const a = await subscribed(prices.monthly.id, 'pm_card_chargeCustomerFail', { payment_behavior: 'allow_incomplete' });
  const voided = await h.stripe.invoices.voidInvoice(a.sub.latest_invoice as string);
  assert.equal(voided.status, 'void');
  await assert.rejects(h.stripe.invoices.pay(voided.id as string), (e: any) => e.statusCode === 400);
  const b = await subscribed(prices.monthly.id, 'pm_card_chargeCustomerFail', { payment_behavior: 'allow_incomplete' });
  const bad = await h.stripe.invoices.markUncollectible(b.sub.latest_invoice as string);
  assert.equal(bad.status, 'uncollectible');
  const good = await h.stripe.paymentMethods.attach('pm_card_visa', { customer: b.customer.id });
  const paid = await h.stripe.invoices.pay(bad.id as string, { payment_method: good.id });
  assert.equal(paid.status, 'paid');
});

test('Stripe-side retries off: a failed renewal stays past_due until paid', async () => {
  await h.control('POST', '/dunning', { retry_days: [], final_status: 'past_due' });
  try {
    const { clock, customer, sub } = await subscribed(prices.monthly.id);
    await h.control('POST', `/customers/${customer.id}/charges`, { outcome: 'fail' });
    await advance(clock, kFeb1 + 20 * kDay);
    const s = await h.stripe.subscriptions.retrieve(sub.id);
    assert.equal(s.status, 'past_due');
    const inv = await h.stripe.invoices.retrieve(s.latest_invoice as string);
    assert.equal(inv.attempt_count, 1);
    assert.equal(inv.next_payment_attempt, null);
    assert.equal((await h.stripe.invoices.pay(inv.id as string)).status, 'paid');
    assert.equal((await h.stripe.subscriptions.retrieve(sub.id)).status, 'active');
  } finally {
    await h.control('POST', '/dunning', { retry_days: [3, 5, 7], final_status: 'canceled' });
  }
});

test('invoice items: a renewal of many lines embeds the first page; the rest pages by limit', async () => {
  const { clock, customer, sub } = await subscribed(prices.starter.id);
  for (let i = 1; i <= 12; i++) {
    const item = await h.stripe.invoiceItems.create({
      customer: customer.id, subscription: sub.id, amount: 100 * i, currency: 'usd', description: `Item ${i}`,
    });
    assert.equal(item.object, 'invoiceitem');
    assert.equal(item.amount, 100 * i);
    assert.equal(item.invoice, null);
  }
  await assert.rejects(
    h.stripe.invoiceItems.create({ customer: customer.id, amount: 5, currency: 'usd' }),
    (e: any) => e.code === 'parameter_missing' && e.param === 'subscription');
  await h.waitIdle();
  h.received.length = 0;
  await advance(clock, kFeb1);
  const [renewal] = (await h.stripe.invoices.list({ subscription: sub.id, limit: 1 })).data;
  // 12 items and the period's line; Stripe's invoice object holds the first 10.
  assert.equal(renewal.total, 100 * 78 + 1000);
  assert.equal(renewal.lines.data.length, 10);
  assert.equal(renewal.lines.has_more, true);
  const retrieved = await h.stripe.invoices.retrieve(renewal.id as string);
  assert.equal(retrieved.lines.data.length, 10);
  assert.equal(retrieved.lines.has_more, true);
  await h.waitIdle();
  const finalized = h.received.find((r) => r.event?.type === 'invoice.finalized');
  const inEvent = finalized?.event?.data.object as Stripe.Invoice;
  assert.equal(inEvent.lines.data.length, 10);
  assert.equal(inEvent.lines.has_more, true);
  // Every line through the lines list, following has_more with starting_after.
  const all: Stripe.InvoiceLineItem[] = [];
  for await (const line of h.stripe.invoices.listLineItems(renewal.id as string, { limit: 5 })) all.push(line);
  assert.equal(all.length, 13);
  assert.equal(all.reduce((a, l) => a + l.amount, 0), renewal.total);
  assert.deepEqual(all.slice(0, 10).map((l) => l.id), renewal.lines.data.map((l) => l.id));
  // A test may make the pages smaller: a larger limit is served as the smaller page.
  assert.deepEqual(await h.control('POST', '/lists', { embedded_invoice_lines: 3, max_page: 4 }),
                   { embedded_invoice_lines: 3, max_page: 4 });
  const small = await h.stripe.invoices.retrieve(renewal.id as string);
  assert.equal(small.lines.data.length, 3);
  assert.equal(small.lines.has_more, true);
  const page = await h.stripe.invoices.listLineItems(renewal.id as string, { limit: 100, starting_after: all[2].id });
  assert.equal(page.data.length, 4);
  assert.equal(page.has_more, true);
  const last = await h.stripe.invoices.listLineItems(renewal.id as string, { limit: 100, starting_after: all[10].id });
  assert.deepEqual(last.data.map((l) => l.id), [all[11].id, all[12].id]);
  assert.equal(last.has_more, false);
  await h.control('POST', '/lists', { embedded_invoice_lines: 10, max_page: 100 });
});
