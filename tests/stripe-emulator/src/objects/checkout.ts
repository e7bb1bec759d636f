// Checkout sessions (mode subscription or setup). The session's `url` is a page on the emulator;
// GET of that page (or POST /_emulator/checkout/{id}/complete) "pays" it: a card is attached, the
// subscription created and its first invoice paid, then checkout.session.completed is sent and
// the browser is redirected to success_url.
import type Stripe from 'stripe';

import { allowOnly, applyMetadata, hash, int, list, oneOf, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Emulator, Route } from '../router';
import { CheckoutSession, newestFirst, paginate } from '../store';
import { attach, isFailingToken } from './payment_methods';
import { newSubscription } from './subscriptions';
import { checkTogether, quantityFor } from '../items';

interface Pending {
  items: { price: string; quantity: number | undefined }[];
  trialDays?: number;
  subscriptionMetadata: Record<string, string>;
}
const pendingLines = new Map<string, Pending>();

function create(ctx: Ctx): CheckoutSession {
  const { store } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['mode', 'customer', 'customer_email', 'line_items', 'success_url', 'cancel_url',
                'client_reference_id', 'metadata', 'subscription_data', 'payment_method_types',
                'allow_promotion_codes', 'billing_address_collection', 'currency', 'locale',
                'setup_intent_data', 'ui_mode', 'return_url',
                // Accepted and ignored: they change only what Stripe's page shows or collects.
                'automatic_tax', 'tax_id_collection', 'customer_update', 'payment_method_collection',
                'consent_collection', 'phone_number_collection', 'submit_type', 'custom_text',
                'expires_at']);
  const mode = oneOf(p, 'mode', ['subscription', 'setup', 'payment'] as const);
  if (!mode) throw StripeError.invalid('Missing required param: mode.', 'mode', 'parameter_missing');
  if (mode === 'payment') throw StripeError.invalid('The emulator supports mode subscription and setup.', 'mode');
  const customer = str(p, 'customer');
  if (customer) store.customer(customer);
  const successUrl = reqStr(p, 'success_url');
  const id = store.id('cs_test');
  const now = store.nowFor(customer);
  let amount: number | null = null;
  let currency: string | null = str(p, 'currency') ?? null;
  if (mode === 'subscription') {
    const raw = list(p, 'line_items') ?? [];
    if (raw.length === 0) {
      throw StripeError.invalid('Missing required param: line_items[0][price].', 'line_items', 'parameter_missing');
    }
    const items = raw.map((it, i) => {
      if (typeof it !== 'object' || Array.isArray(it)) throw StripeError.invalid(`Invalid line_items[${i}]`, `line_items[${i}]`);
      const price = store.activePrice(reqStr(it, 'price', `line_items[${i}][price]`), `line_items[${i}][price]`);
      if (!price.recurring) {
        throw StripeError.invalid('You must provide at least one recurring price in `subscription` mode.', `line_items[${i}][price]`);
      }
      return { price, quantity: quantityFor(price, int(it, 'quantity', `line_items[${i}][quantity]`), `line_items[${i}][quantity]`) };
    });
    checkTogether(items.map((x) => x.price), 'line_items');
    const sd = hash(p, 'subscription_data');
    pendingLines.set(id, {
      items: items.map((x) => ({ price: x.price.id, quantity: x.quantity })),
      trialDays: sd ? int(sd, 'trial_period_days', 'subscription_data[trial_period_days]') : undefined,
      subscriptionMetadata: sd ? applyMetadata({}, sd) : {},
    });
    // What is due now: the licensed items (metered ones are billed in arrears).
    amount = items.reduce((a, x) => a + (x.quantity === undefined ? 0 : (x.price.unit_amount ?? 0) * x.quantity), 0);
    currency = items[0].price.currency;
  } else if (!customer) {
    throw StripeError.invalid('Missing required param: customer.', 'customer', 'parameter_missing');
  }
  const s: CheckoutSession = {
    id,
    object: 'checkout.session',
    amount_subtotal: amount,
    amount_total: amount,
    cancel_url: str(p, 'cancel_url') ?? null,
    client_reference_id: str(p, 'client_reference_id') ?? null,
    created: now,
    currency,
    customer: customer ?? null,
    customer_email: str(p, 'customer_email') ?? null,
    expires_at: now + 86400,
    invoice: null,
    livemode: false,
    metadata: applyMetadata({}, p),
    mode,
    payment_method_types: ['card'],
    payment_status: mode === 'setup' ? 'no_payment_required' : 'unpaid',
    setup_intent: mode === 'setup' ? store.id('seti') : null,
    status: 'open',
    subscription: null,
    success_url: successUrl,
    url: `${ctx.emu.baseUrl}/checkout/${id}`,
  };
  store.checkoutSessions.set(id, s);
  return s;
}

// Completes an open session as the customer would on Stripe's page, paying with `card` (a test
// token). Idempotent: a completed session is returned as it is.
export function complete(emu: Emulator, id: string, card = 'pm_card_visa'): CheckoutSession {
  const { store, webhooks } = emu;
  const s = store.checkoutSessions.get(id);
  if (!s) throw StripeError.missing('checkout.session', id);
  if (s.status === 'complete') return s;
  if (s.status !== 'open') throw StripeError.invalid(`This Checkout Session is ${s.status}.`);
  let customer = s.customer as string | null;
  // A declined card leaves the session open and creates nothing, as on Stripe's page.
  const failNext = customer ? store.failNextCharges.get(customer) ?? 0 : 0;
  if (s.mode === 'subscription' && (isFailingToken(card) || failNext > 0)) {
    if (customer && failNext > 0) store.failNextCharges.set(customer, failNext - 1);
    throw StripeError.card('Your card was declined.', 'generic_decline');
  }
  if (!customer) {
    const cid = store.id('cus');
    store.customers.set(cid, {
      id: cid, object: 'customer', balance: 0, created: store.now(), default_source: null,
      description: null, email: s.customer_email, invoice_settings: {
        custom_fields: null, default_payment_method: null, footer: null, rendering_options: null,
      }, livemode: false, metadata: {}, shipping: null, test_clock: null,
    });
    webhooks.emit('customer.created', store.customer(cid));
    customer = cid;
    s.customer = cid;
  }
  const pm = attach(emu, card, customer);
  const cus = store.customer(customer);
  if (s.mode === 'setup') {
    cus.invoice_settings.default_payment_method = pm.id;
    webhooks.emit('customer.updated', cus);
  } else {
    const line = pendingLines.get(id);
    if (!line) throw StripeError.invalid('This Checkout Session has no line items.');
    const items = line.items.map((x) => ({ price: store.price(x.price), quantity: x.quantity }));
    const now = store.nowFor(customer);
    const sub = newSubscription(emu, customer, items, {
      trialEnd: line.trialDays ? now + line.trialDays * 86400 : undefined,
      metadata: line.subscriptionMetadata,
      defaultPaymentMethod: pm.id,
    });
    s.subscription = sub.id;
    s.invoice = typeof sub.latest_invoice === 'string' ? sub.latest_invoice : null;
    if (sub.status !== 'active' && sub.status !== 'trialing') {
      throw StripeError.card('Your card was declined.', 'generic_decline');
    }
    s.payment_status = 'paid';
  }
  s.status = 'complete';
  webhooks.emit('checkout.session.completed', s as unknown as Stripe.Checkout.Session);
  return s;
}

function session(ctx: Ctx): CheckoutSession {
  const s = ctx.emu.store.checkoutSessions.get(ctx.path[0]);
  if (!s) throw StripeError.missing('checkout.session', ctx.path[0], 'session');
  return s;
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/checkout/sessions', handler: create },
  { method: 'GET', path: '/v1/checkout/sessions/:id', handler: session },
  {
    method: 'POST',
    path: '/v1/checkout/sessions/:id/expire',
    handler: (ctx) => {
      const s = session(ctx);
      if (s.status !== 'open') throw StripeError.invalid(`This Checkout Session is ${s.status}.`);
      s.status = 'expired';
      ctx.emu.webhooks.emit('checkout.session.expired', s as unknown as Stripe.Checkout.Session);
      return s;
    },
  },
  {
    method: 'GET',
    path: '/v1/checkout/sessions',
    handler: (ctx) => {
      const sub = str(ctx.params, 'subscription');
      const cus = str(ctx.params, 'customer');
      const all = newestFirst(ctx.emu.store.checkoutSessions).filter(
        (s) => (!sub || s.subscription === sub) && (!cus || s.customer === cus));
      return paginate(all, ctx.params, '/v1/checkout/sessions');
    },
  },
];

export function resetCheckout(): void {
  pendingLines.clear();
}
