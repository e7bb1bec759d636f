// Payment methods: Stripe's test tokens (pm_card_visa, pm_card_mastercard,
// pm_card_chargeCustomerFail: attaches but every charge is declined, pm_card_visa_chargeDeclined:
// declined when attached) become card payment methods; attach / detach / list / retrieve.
import type Stripe from 'stripe';

import { allowOnly, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Emulator, Route } from '../router';
import { newestFirst, paginate } from '../store';

const kTestCards: Record<string, { brand: string; last4: string; fails?: boolean; declinedOnAttach?: boolean }> = {
  pm_card_visa: { brand: 'visa', last4: '4242' },
  pm_card_mastercard: { brand: 'mastercard', last4: '4444' },
  pm_card_amex: { brand: 'amex', last4: '8431' },
  pm_card_chargeCustomerFail: { brand: 'visa', last4: '0341', fails: true },
  pm_card_visa_chargeDeclined: { brand: 'visa', last4: '0002', declinedOnAttach: true },
};

// True when a charge to this test token would be declined.
export function isFailingToken(token: string): boolean {
  const card = kTestCards[token];
  return Boolean(card && (card.fails || card.declinedOnAttach));
}

export function newCard(emu: Emulator, token: string): Stripe.PaymentMethod {
  const { store } = emu;
  const card = kTestCards[token];
  if (!card) throw StripeError.missing('PaymentMethod', token, 'payment_method');
  const pm: Stripe.PaymentMethod = {
    id: store.id('pm'),
    object: 'payment_method',
    allow_redisplay: 'unspecified',
    billing_details: { address: null, email: null, name: null, phone: null, tax_id: null },
    card: {
      brand: card.brand,
      checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: 'pass' },
      country: 'US',
      display_brand: card.brand,
      exp_month: 12,
      exp_year: new Date().getUTCFullYear() + 3,
      fingerprint: card.last4 + 'emu',
      funding: 'credit',
      generated_from: null,
      last4: card.last4,
      networks: { available: [card.brand], preferred: null },
      regulated_status: 'unregulated',
      three_d_secure_usage: { supported: true },
      wallet: null,
    },
    created: store.now(),
    customer: null,
    customer_account: null,
    livemode: false,
    metadata: {},
    type: 'card',
  };
  store.paymentMethods.set(pm.id, pm);
  if (card.fails) store.failingPaymentMethods.add(pm.id);
  if (card.declinedOnAttach) store.failingPaymentMethods.add(pm.id + ':attach');
  return pm;
}

// Attaches `idOrToken` (a pm id or a test token) to the customer; emits payment_method.attached.
export function attach(emu: Emulator, idOrToken: string, customer: string): Stripe.PaymentMethod {
  const { store } = emu;
  store.customer(customer);
  const pm = store.paymentMethods.get(idOrToken) ?? newCard(emu, idOrToken);
  if (store.failingPaymentMethods.has(pm.id + ':attach')) {
    throw StripeError.card('Your card was declined.', 'generic_decline');
  }
  if (pm.customer && pm.customer !== customer) {
    throw StripeError.invalid('This PaymentMethod is already attached to another customer.', 'payment_method');
  }
  pm.customer = customer;
  emu.webhooks.emit('payment_method.attached', pm);
  return pm;
}

function paymentMethod(ctx: Ctx): Stripe.PaymentMethod {
  const pm = ctx.emu.store.paymentMethods.get(ctx.path[0]);
  if (!pm) throw StripeError.missing('PaymentMethod', ctx.path[0], 'payment_method');
  return pm;
}

function listFor(ctx: Ctx, customer: string | undefined, url: string) {
  if (!customer) throw StripeError.invalid('Missing required param: customer.', 'customer', 'parameter_missing');
  ctx.emu.store.customer(customer);
  const type = str(ctx.params, 'type');
  const all = newestFirst(ctx.emu.store.paymentMethods).filter(
    (pm) => pm.customer === customer && (!type || pm.type === type));
  return paginate(all, ctx.params, url);
}

export const routes: Route[] = [
  {
    method: 'POST',
    path: '/v1/payment_methods/:id/attach',
    handler: (ctx) => {
      allowOnly(ctx.params, ['customer']);
      return attach(ctx.emu, ctx.path[0], reqStr(ctx.params, 'customer'));
    },
  },
  {
    method: 'POST',
    path: '/v1/payment_methods/:id/detach',
    handler: (ctx) => {
      const pm = paymentMethod(ctx);
      if (!pm.customer) throw StripeError.invalid('The payment method you provided is not attached to a customer.', 'payment_method');
      const customer = ctx.emu.store.customers.get(pm.customer as string);
      if (customer?.invoice_settings.default_payment_method === pm.id) {
        customer.invoice_settings.default_payment_method = null;
      }
      pm.customer = null;
      ctx.emu.webhooks.emit('payment_method.detached', pm);
      return pm;
    },
  },
  { method: 'GET', path: '/v1/payment_methods/:id', handler: paymentMethod },
  { method: 'GET', path: '/v1/payment_methods', handler: (ctx) => listFor(ctx, str(ctx.params, 'customer'), '/v1/payment_methods') },
  {
    method: 'GET',
    path: '/v1/customers/:id/payment_methods',
    handler: (ctx) => listFor(ctx, ctx.path[0], `/v1/customers/${ctx.path[0]}/payment_methods`),
  },
];
