// Webhook delivery: signatures that stripe.webhooks.constructEvent accepts (and rejects with
// another secret), retries after failures, and held events released late, reversed and twice.
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';

import Stripe from 'stripe';

import { Harness, kWebhookSecret, start } from './harness';

let h: Harness;
before(async () => {
  h = await start();
});
after(async () => h.close());
beforeEach(async () => {
  await h.waitIdle();
  h.received.length = 0;
});

test('each event is signed for the endpoint secret and verifies only with it', async () => {
  const c = await h.stripe.customers.create({ email: 'w@example.com' });
  await h.waitIdle();
  assert.equal(h.received.length, 1);
  const got = h.received[0];
  assert.equal(got.error, null);
  assert.equal(got.event?.type, 'customer.created');
  assert.equal((got.event?.data.object as Stripe.Customer).id, c.id);
  assert.equal(got.event?.api_version, Stripe.API_VERSION);
  assert.match(got.event?.id ?? '', /^evt_/);
  assert.match(got.signature, /^t=\d+,v1=[0-9a-f]{64}$/);
  // The same payload under another secret does not verify.
  const payload = JSON.stringify(await h.stripe.events.retrieve(got.event!.id), null, 2);
  const header = h.stripe.webhooks.generateTestHeaderString({ payload, secret: kWebhookSecret });
  assert.ok(h.stripe.webhooks.constructEvent(payload, header, kWebhookSecret));
  assert.throws(() => h.stripe.webhooks.constructEvent(payload, header, 'whsec_other'),
                (e: unknown) => e instanceof Stripe.errors.StripeSignatureVerificationError);
});

test('a failed delivery is retried until the endpoint answers 2xx', async () => {
  h.receiverStatuses.push(500, 503);
  await h.stripe.customers.create({ email: 'retry@example.com' });
  await h.waitIdle();
  assert.equal(h.received.filter((r) => r.event?.type === 'customer.created').length, 1);
  const d = await h.control('GET', '/webhooks/deliveries');
  const attempts = d.data.filter((x: any) => x.type === 'customer.created').slice(-3);
  assert.deepEqual(attempts.map((x: any) => [x.attempt, x.status]), [[1, 500], [2, 503], [3, 200]]);
  assert.equal(new Set(attempts.map((x: any) => x.event)).size, 1, 'the same event each time');
});

test('held events are delivered late, in reverse order and twice on request', async () => {
  await h.control('POST', '/webhooks/hold');
  const a = await h.stripe.products.create({ name: 'first' });
  const b = await h.stripe.products.create({ name: 'second' });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.received.length, 0, 'nothing while held');
  const held = await h.control('GET', '/webhooks/held');
  assert.equal(held.data.length, 2);
  const started = Date.now();
  const r = await h.control('POST', '/webhooks/release', { order: 'reverse', duplicate: true, delay_ms: 150 });
  assert.equal(r.released, 4);
  await new Promise((res) => setTimeout(res, 20));
  await h.waitIdle();
  assert.ok(Date.now() - started >= 150, 'delivered late');
  const ids = h.received.map((x) => (x.event?.data.object as Stripe.Product).id);
  assert.deepEqual(ids, [b.id, b.id, a.id, a.id]);
  assert.equal(h.received[0].event?.id, h.received[1].event?.id, 'a duplicate is the same event');
  // Released means no longer held.
  await h.stripe.products.create({ name: 'third' });
  await h.waitIdle();
  assert.equal(h.received.length, 5);
  // And any stored event can be sent again.
  const again = await h.control('POST', `/events/${h.received[0].event!.id}/resend`);
  assert.equal(again.deliveries, 1);
  await h.waitIdle();
  assert.equal(h.received.length, 6);
});

test('webhook endpoints through the API; the secret is shown on create only', async () => {
  const e = await h.stripe.webhookEndpoints.create({ url: 'http://127.0.0.1:9/none', enabled_events: ['invoice.paid'] });
  assert.match(e.secret ?? '', /^whsec_/);
  const listed = await h.stripe.webhookEndpoints.list();
  assert.ok(listed.data.some((x) => x.id === e.id && x.secret === undefined));
  const d = await h.stripe.webhookEndpoints.del(e.id);
  assert.equal(d.deleted, true);
});

test('deliveries signed wrongly on request: another secret, a stale timestamp', async () => {
  await h.stripe.customers.create({ email: 'sig@example.com' });
  await h.waitIdle();
  const id = h.received[0].event!.id;
  h.received.length = 0;
  await h.control('POST', `/events/${id}/resend`, { secret: 'whsec_not_the_endpoints' });
  await h.control('POST', `/events/${id}/resend`, { timestamp_offset: -600 });
  await h.waitIdle();
  assert.equal(h.received.length, 2);
  assert.match(h.received[0].error ?? '', /No signatures found matching/);
  assert.match(h.received[1].error ?? '', /Timestamp outside the tolerance zone/);
});

test('while a secret is rolled, each delivery carries a v1 signature per secret', async () => {
  const old = 'whsec_the_previous_secret';
  await h.control('POST', '/webhook_endpoint', { url: h.receiverUrl, secret: kWebhookSecret, extra_secrets: [old] });
  await h.stripe.customers.create({ email: 'roll@example.com' });
  await h.waitIdle();
  const got = h.received.at(-1)!;
  assert.equal(got.error, null);
  assert.match(got.signature, /^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
  const payload = JSON.stringify(await h.stripe.events.retrieve(got.event!.id), null, 2);
  // Each secret alone verifies the delivery's header.
  assert.ok(h.stripe.webhooks.constructEvent(payload, got.signature, old));
  assert.ok(h.stripe.webhooks.constructEvent(payload, got.signature, kWebhookSecret));
  const endpoints = await h.stripe.webhookEndpoints.list();
  assert.equal(endpoints.data.filter((e) => e.url === h.receiverUrl).length, 1, 'the endpoint was replaced');
});
