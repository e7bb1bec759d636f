// Stripe's wire protocol: form encoding with nested params, auth, the error envelope and the SDK's
// error classes, Request-Id / Stripe-Version headers, idempotency replay and conflict, lists.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Stripe from 'stripe';

import { decodeForm, encodeForm } from '../src/encoding';
import { Harness, start } from './harness';

let h: Harness;
before(async () => {
  h = await start();
});
after(async () => h.close());

test('decodes nested params, arrays and expand[] as Stripe encodes them', () => {
  const p = decodeForm(
    'customer=cus_1&items[0][price]=price_a&items[0][quantity]=2&items[1][price]=price_b' +
      '&metadata[tenant_id]=t%201&expand[]=latest_invoice&expand[]=customer' +
      '&subscription_details[items][0][id]=si_1&a[b][c]=deep');
  assert.deepEqual(p, {
    customer: 'cus_1',
    items: [{ price: 'price_a', quantity: '2' }, { price: 'price_b' }],
    metadata: { tenant_id: 't 1' },
    expand: ['latest_invoice', 'customer'],
    subscription_details: { items: [{ id: 'si_1' }] },
    a: { b: { c: 'deep' } },
  });
  // Index order, not text order; and the encoder is its inverse.
  assert.deepEqual(decodeForm('x[1]=b&x[0]=a'), { x: ['a', 'b'] });
  assert.deepEqual(decodeForm(encodeForm({ q: [{ r: 's' }], m: { k: 'v&=' } })), { q: [{ r: 's' }], m: { k: 'v&=' } });
});

test('what the SDK sends round-trips: metadata, nested hashes, expand', async () => {
  const c = await h.stripe.customers.create({
    email: 'enc@example.com', name: 'Ünïcode & Co', metadata: { tenant_id: 'abc', 'key with space': 'v=1&2' },
  }, { idempotencyKey: 'enc-1' });
  assert.equal(c.name, 'Ünïcode & Co');
  assert.deepEqual(c.metadata, { tenant_id: 'abc', 'key with space': 'v=1&2' });
  // metadata[k]= removes one key.
  const u = await h.stripe.customers.update(c.id, { metadata: { tenant_id: '' } });
  assert.deepEqual(u.metadata, { 'key with space': 'v=1&2' });
  const log = await h.control('GET', '/requests');
  const create = log.data.find((r: any) => r.idempotency_key === 'enc-1');
  assert.equal(create.params.metadata.tenant_id, 'abc');
  assert.equal(create.stripe_version, Stripe.API_VERSION);
});

test('auth, errors and headers', async () => {
  const raw = await fetch(`${h.baseUrl}/v1/customers`);
  assert.equal(raw.status, 401);
  const body = await raw.json();
  assert.equal(body.error.type, 'invalid_request_error');
  assert.match(raw.headers.get('request-id') ?? '', /^req_/);

  const bad = new Stripe('pk_test_wrongkind', { host: '127.0.0.1', port: new URL(h.baseUrl).port, protocol: 'http' });
  await assert.rejects(bad.customers.list(), (e: unknown) => e instanceof Stripe.errors.StripeAuthenticationError);

  await assert.rejects(h.stripe.customers.retrieve('cus_missing'), (e: any) => {
    assert.ok(e instanceof Stripe.errors.StripeInvalidRequestError);
    assert.equal(e.statusCode, 404);
    assert.equal(e.code, 'resource_missing');
    assert.match(String(e.requestId), /^req_/);
    return true;
  });
  await assert.rejects(h.stripe.prices.create({ currency: 'usd', unit_amount: 5 } as Stripe.PriceCreateParams), (e: any) => {
    assert.equal(e.statusCode, 400);
    assert.equal(e.code, 'parameter_missing');
    assert.equal(e.param, 'product');
    return true;
  });
  await assert.rejects(
    h.stripe.customers.create({ bogus: 'x' } as Stripe.CustomerCreateParams),
    (e: any) => e.code === 'parameter_unknown' && e.param === 'bogus');
  await assert.rejects(
    h.stripe.prices.create({ currency: 'usd', unit_amount: 'ten' as unknown as number, product: 'prod_x' }),
    (e: any) => e.code === 'parameter_invalid_integer' && e.param === 'unit_amount');

  const versioned = await fetch(`${h.baseUrl}/v1/customers`, {
    headers: { Authorization: 'Bearer sk_test_x', 'Stripe-Version': '2024-06-20' },
  });
  assert.equal(versioned.status, 200);
  assert.equal(versioned.headers.get('stripe-version'), '2024-06-20');
  const unknown = await fetch(`${h.baseUrl}/v1/charges`, { headers: { Authorization: 'Bearer sk_test_x' } });
  assert.equal(unknown.status, 404);
});

test('idempotency: the same key and body replays, another body under the key is refused', async () => {
  const a = await h.stripe.customers.create({ email: 'idem@example.com' }, { idempotencyKey: 'key-1' });
  const b = await h.stripe.customers.create({ email: 'idem@example.com' }, { idempotencyKey: 'key-1' });
  assert.equal(b.id, a.id);
  assert.equal(b.lastResponse.headers['idempotent-replayed'], 'true');
  assert.equal(b.lastResponse.headers['original-request'], a.lastResponse.requestId);
  const all = await h.stripe.customers.list({ email: 'idem@example.com' });
  assert.equal(all.data.length, 1, 'the replay created nothing');
  await assert.rejects(
    h.stripe.customers.create({ email: 'other@example.com' }, { idempotencyKey: 'key-1' }),
    (e: any) => {
      assert.ok(e instanceof Stripe.errors.StripeIdempotencyError);
      assert.equal(e.statusCode, 400);
      return true;
    });
  // Errors are replayed too (a 4xx is the answer to that request).
  const form = 'currency=usd&unit_amount=1&product=prod_missing';
  const post = () => fetch(`${h.baseUrl}/v1/prices`, {
    method: 'POST',
    headers: { Authorization: 'Bearer sk_test_x', 'Idempotency-Key': 'key-err', 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  const first = await post();
  const second = await post();
  assert.equal(first.status, 404);
  assert.equal(second.status, 404);
  assert.equal(second.headers.get('idempotent-replayed'), 'true');
  // The request log shows each POST's key, so HSEA's tests can assert one on every POST.
  const log = await h.control('GET', '/requests');
  const keyed = log.data.filter((r: any) => r.idempotency_key === 'key-1');
  assert.equal(keyed.length, 3);
  assert.deepEqual(keyed.map((r: any) => r.replayed), [false, true, false]);
});

test('lists: newest first, limit, starting_after, ending_before, has_more, auto-paging', async () => {
  const tag = `list-${Date.now()}`;
  const made: string[] = [];
  for (let i = 0; i < 7; i++) made.push((await h.stripe.products.create({ name: `${tag}-${i}` })).id);
  const newest = [...made].reverse();
  const page1 = await h.stripe.products.list({ limit: 3 });
  assert.equal(page1.object, 'list');
  assert.equal(page1.url, '/v1/products');
  assert.deepEqual(page1.data.map((p) => p.id), newest.slice(0, 3));
  assert.equal(page1.has_more, true);
  const page2 = await h.stripe.products.list({ limit: 3, starting_after: page1.data[2].id });
  assert.deepEqual(page2.data.map((p) => p.id), newest.slice(3, 6));
  const back = await h.stripe.products.list({ limit: 2, ending_before: page2.data[0].id });
  assert.deepEqual(back.data.map((p) => p.id), newest.slice(1, 3));
  assert.equal(back.has_more, true);
  const all = await h.stripe.products.list({ limit: 2 }).autoPagingToArray({ limit: 100 });
  assert.deepEqual(all.map((p) => p.id).filter((id) => made.includes(id)), newest);
  await assert.rejects(h.stripe.products.list({ limit: 101 }), (e: any) => e.param === 'limit');
});

test('injected faults: 429 with Stripe-Should-Retry, retried by the SDK', async () => {
  await h.control('POST', '/faults', { path_prefix: '/v1/products', method: 'POST', status: 429, count: 1, should_retry: true });
  const port = new URL(h.baseUrl).port;
  const retrying = new Stripe('sk_test_x', { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries: 2 });
  const p = await retrying.products.create({ name: 'after 429' });
  assert.equal(p.name, 'after 429');
  const log = await h.control('GET', '/requests');
  const attempts = log.data.filter((r: any) => r.path === '/v1/products' && r.method === 'POST').slice(-2);
  assert.deepEqual(attempts.map((r: any) => r.status), [429, 200]);
  assert.equal(attempts[0].idempotency_key, attempts[1].idempotency_key, 'the SDK retried under one key');
});
