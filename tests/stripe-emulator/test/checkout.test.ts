// Checkout -> subscription, driven by the official SDK; the webhooks are verified with
// stripe.webhooks.constructEvent.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type Stripe from 'stripe';

import { Harness, catalog, start } from './harness';

let h: Harness;
before(async () => {
  h = await start();
});
after(async () => h.close());

test('checkout pays, creates the subscription and sends the events, signed', async () => {
  const { monthly } = await catalog(h.stripe);
  const customer = await h.stripe.customers.create({ email: 'owner@example.com', metadata: { tenant_id: 't1' } });
  const session = await h.stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customer.id,
    line_items: [{ price: monthly.id, quantity: 1 }],
    success_url: 'http://app.example/billing?session={CHECKOUT_SESSION_ID}',
    cancel_url: 'http://app.example/billing',
    client_reference_id: 't1',
  });
  assert.equal(session.status, 'open');
  assert.ok(session.url?.startsWith(h.baseUrl));
  // The customer "pays" on the emulator's page and is sent back to success_url.
  const page = await fetch(session.url as string, { redirect: 'manual' });
  assert.equal(page.status, 303);
  assert.equal(page.headers.get('location'), `http://app.example/billing?session=${session.id}`);

  const done = await h.stripe.checkout.sessions.retrieve(session.id, { expand: ['subscription'] });
  assert.equal(done.status, 'complete');
  assert.equal(done.payment_status, 'paid');
  const sub = done.subscription as Stripe.Subscription;
  assert.equal(sub.status, 'active');
  assert.equal(sub.items.data[0].price.id, monthly.id);
  assert.ok(sub.items.data[0].current_period_end > sub.items.data[0].current_period_start);
  assert.equal(typeof sub.default_payment_method, 'string');
  const invoice = await h.stripe.invoices.retrieve(sub.latest_invoice as string);
  assert.equal(invoice.status, 'paid');
  assert.equal(invoice.amount_paid, 3000);
  assert.equal(invoice.parent?.subscription_details?.subscription, sub.id);

  await h.waitIdle();
  const types = h.received.map((r) => r.event?.type);
  for (const t of ['checkout.session.completed', 'customer.subscription.created', 'invoice.finalized', 'invoice.paid', 'payment_method.attached']) {
    assert.ok(types.includes(t as Stripe.Event.Type), `${t} delivered (got ${types.join(', ')})`);
  }
  assert.ok(h.received.every((r) => r.error === null), 'every signature verifies');
  const completed = h.received.find((r) => r.event?.type === 'checkout.session.completed')?.event;
  assert.equal((completed?.data.object as Stripe.Checkout.Session).subscription, sub.id);
  // Events are retrievable and listable.
  const again = await h.stripe.events.retrieve(completed!.id);
  assert.equal(again.type, 'checkout.session.completed');
  const listed = await h.stripe.events.list({ type: 'invoice.paid' });
  assert.ok(listed.data.some((e) => (e.data.object as Stripe.Invoice).id === invoice.id));
});

test('a setup session attaches a card and makes it the default', async () => {
  const customer = await h.stripe.customers.create({ email: 'b@example.com' });
  const s = await h.stripe.checkout.sessions.create({
    mode: 'setup', customer: customer.id, currency: 'usd', success_url: 'http://app.example/ok',
  });
  const r = await h.control('POST', `/checkout/${s.id}/complete`, { card: 'pm_card_mastercard' });
  assert.equal(r.status, 'complete');
  const c = (await h.stripe.customers.retrieve(customer.id)) as Stripe.Customer;
  const pms = await h.stripe.paymentMethods.list({ customer: customer.id, type: 'card' });
  assert.equal(pms.data.length, 1);
  assert.equal(pms.data[0].card?.last4, '4444');
  assert.equal(c.invoice_settings.default_payment_method, pms.data[0].id);
  const portal = await h.stripe.billingPortal.sessions.create({ customer: customer.id, return_url: 'http://app.example/billing' });
  assert.ok(portal.url.startsWith(`${h.baseUrl}/portal/`));
  assert.equal((await fetch(portal.url)).status, 200);
});

test('the checkout page offers Pay and Cancel; cancel goes back to cancel_url', async () => {
  const { monthly } = await catalog(h.stripe);
  const customer = await h.stripe.customers.create({ email: 'page@example.com' });
  const s = await h.stripe.checkout.sessions.create({
    mode: 'subscription', customer: customer.id, line_items: [{ price: monthly.id, quantity: 2 }],
    success_url: 'http://app.example/ok', cancel_url: 'http://app.example/back',
  });
  assert.equal(s.amount_total, 6000);
  const page = await (await fetch(`${s.url}/page`)).text();
  assert.match(page, /60\.00 USD/);
  assert.match(page, new RegExp(`action="/checkout/${s.id}"`));
  const cancel = await fetch(`${s.url}/cancel`, { redirect: 'manual' });
  assert.equal(cancel.headers.get('location'), 'http://app.example/back');
  assert.equal((await h.stripe.checkout.sessions.retrieve(s.id)).status, 'open');
  const paid = await fetch(`${s.url}?card=pm_card_mastercard`, { redirect: 'manual' });
  assert.equal(paid.status, 303);
  const sub = await h.stripe.subscriptions.retrieve((await h.stripe.checkout.sessions.retrieve(s.id)).subscription as string);
  assert.equal(sub.items.data[0].quantity, 2);
  assert.equal((await h.stripe.invoices.retrieve(sub.latest_invoice as string)).amount_paid, 6000);
});
