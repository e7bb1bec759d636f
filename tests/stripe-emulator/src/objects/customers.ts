// Customers: create / retrieve / update / delete / list.
import type Stripe from 'stripe';

import { allowOnly, applyMetadata, hash, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Route } from '../router';
import { newestFirst, paginate } from '../store';

const kWritable = ['email', 'name', 'description', 'phone', 'metadata', 'invoice_settings',
                   'preferred_locales', 'address'];

function defaultPaymentMethod(ctx: Ctx, p: ReturnType<typeof hash>): string | null | undefined {
  if (!p) return undefined;
  const pm = str(p, 'default_payment_method', 'invoice_settings[default_payment_method]');
  if (pm === undefined) return undefined;
  if (pm === '') return null;
  if (!ctx.emu.store.paymentMethods.has(pm)) {
    throw StripeError.missing('PaymentMethod', pm, 'invoice_settings[default_payment_method]');
  }
  return pm;
}

function create(ctx: Ctx): Stripe.Customer {
  const { store, webhooks } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, [...kWritable, 'test_clock', 'payment_method']);
  const clock = str(p, 'test_clock');
  if (clock && !store.testClocks.has(clock)) throw StripeError.missing('test_clock', clock, 'test_clock');
  const c: Stripe.Customer = {
    id: store.id('cus'),
    object: 'customer',
    address: null,
    balance: 0,
    created: store.now(clock),
    currency: null,
    default_source: null,
    delinquent: false,
    description: str(p, 'description') ?? null,
    discount: null,
    email: str(p, 'email') ?? null,
    invoice_prefix: null,
    invoice_settings: {
      custom_fields: null,
      default_payment_method: null,
      footer: null,
      rendering_options: null,
    },
    livemode: false,
    metadata: applyMetadata({}, p),
    name: str(p, 'name') ?? null,
    phone: str(p, 'phone') ?? null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: clock ?? null,
  };
  store.customers.set(c.id, c);
  webhooks.emit('customer.created', c);
  return c;
}

function update(ctx: Ctx): Stripe.Customer {
  const { store, webhooks } = ctx.emu;
  const c = store.customer(ctx.path[0], 'id');
  const p = ctx.params;
  allowOnly(p, kWritable);
  const before = JSON.parse(JSON.stringify(c)) as Record<string, unknown>;
  for (const k of ['email', 'name', 'description', 'phone'] as const) {
    const v = str(p, k);
    if (v !== undefined) c[k] = v === '' ? null : v;
  }
  c.metadata = applyMetadata(c.metadata, p);
  const pm = defaultPaymentMethod(ctx, hash(p, 'invoice_settings'));
  if (pm !== undefined) c.invoice_settings.default_payment_method = pm;
  const previous: Record<string, unknown> = {};
  for (const k of Object.keys(before)) {
    if (JSON.stringify(before[k]) !== JSON.stringify((c as unknown as Record<string, unknown>)[k])) {
      previous[k] = before[k];
    }
  }
  webhooks.emit('customer.updated', c, previous);
  return c;
}

function remove(ctx: Ctx): Stripe.DeletedCustomer {
  const { store, webhooks } = ctx.emu;
  const c = store.customer(ctx.path[0], 'id');
  store.customers.delete(c.id);
  webhooks.emit('customer.deleted', c);
  return { id: c.id, object: 'customer', deleted: true };
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/customers', handler: create },
  { method: 'GET', path: '/v1/customers/:id', handler: (ctx) => ctx.emu.store.customer(ctx.path[0], 'id') },
  { method: 'POST', path: '/v1/customers/:id', handler: update },
  { method: 'DELETE', path: '/v1/customers/:id', handler: remove },
  {
    method: 'GET',
    path: '/v1/customers',
    handler: (ctx) => {
      const email = str(ctx.params, 'email');
      const all = newestFirst(ctx.emu.store.customers).filter((c) => !email || c.email === email);
      return paginate(all, ctx.params, '/v1/customers');
    },
  },
];
