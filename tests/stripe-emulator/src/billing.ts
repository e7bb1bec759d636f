// Invoices, payments and proration: the money side of subscriptions.
//
// Payments: an invoice is charged to its default payment method, else the subscription's, else
// the customer's invoice_settings.default_payment_method. The charge is declined when there is
// none, when the method is a failing test card (pm_card_chargeCustomerFail) or when the control
// API asked to fail the customer's next charges.
//
// Dunning (Smart-Retries-like, deterministic): after a failed automatic attempt the invoice is
// retried `retryDays` later (default 3, 5 and 7 days after each previous attempt, so four attempts
// in 15 days); while retries remain the subscription is past_due; when the last one fails the
// subscription becomes `finalStatus` (default "canceled", or "unpaid"). A successful payment of
// the subscription's open invoice makes it active again.
//
// Proration (deterministic, by seconds): changing the price at time t within the period [s, e)
// credits  -round(old_amount * qty_old * (e - t) / (e - s))  and charges
// round(new_amount * qty_new * (e - t) / (e - s)). When the interval changes (month <-> year) the
// billing cycle restarts at t: the credit as above plus the full new price, invoiced at once.
import type Stripe from 'stripe';

import { StripeError } from './errors';
import { addInterval } from './periods';
import { planOf } from './objects/prices';
import type { Emulator } from './router';
import type { Invoice, InvoiceLine, Store, Subscription } from './store';

export const dunning = {
  retryDays: [3, 5, 7],
  finalStatus: 'canceled' as 'canceled' | 'unpaid',
};

export function interval(price: Stripe.Price): Stripe.Price.Recurring {
  if (!price.recurring) {
    throw StripeError.invalid(`The price ${price.id} is not recurring.`, 'items[0][price]');
  }
  return price.recurring;
}

export function productName(store: Store, price: Stripe.Price): string {
  const id = typeof price.product === 'string' ? price.product : price.product.id;
  return store.products.get(id)?.name ?? id;
}

export function newLine(
  store: Store,
  args: {
    price: Stripe.Price;
    quantity: number;
    amount: number;
    start: number;
    end: number;
    description: string;
    subscription: Subscription | null;
    proration: boolean;
    prorationDate?: number;
  },
): InvoiceLine {
  const { price, subscription } = args;
  const item = subscription?.items.data[0];
  return {
    id: store.id('il'),
    object: 'line_item',
    amount: args.amount,
    currency: price.currency,
    description: args.description,
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: null,
    livemode: false,
    metadata: {},
    parent: subscription
      ? {
          type: 'subscription_item_details',
          invoice_item_details: null,
          subscription_item_details: {
            invoice_item: args.proration ? store.id('ii') : null,
            proration: args.proration,
            proration_details: { credited_items: null },
            subscription: subscription.id,
            subscription_item: item?.id ?? '',
          },
        }
      : null,
    period: { start: args.start, end: args.end },
    pretax_credit_amounts: [],
    pricing: {
      type: 'price_details',
      price_details: {
        price: price.id,
        product: typeof price.product === 'string' ? price.product : price.product.id,
      },
      unit_amount_decimal: null,
    },
    quantity: args.quantity,
    quantity_decimal: null,
    subscription: subscription?.id ?? null,
    subtotal: args.amount,
    taxes: [],
    price,
    plan: price.recurring ? planOf(price) : null,
    proration: args.proration,
    type: args.proration ? 'invoiceitem' : 'subscription',
    tax_amounts: [],
    unit_amount_excluding_tax: price.unit_amount === null ? null : String(price.unit_amount),
  };
}

export function isMetered(price: Stripe.Price): boolean {
  return price.recurring?.usage_type === 'metered';
}

// The customer's usage of a metered price's meter in [from, to), by the meter's aggregation.
export function usage(store: Store, price: Stripe.Price, customer: string, from: number, to: number): number {
  const meterId = price.recurring?.meter;
  const meter = meterId ? store.meters.get(meterId) : undefined;
  if (!meter) return 0;
  const events = store.meterEvents.filter(
    (e) => e.meter === meter.id && e.customer === customer && e.timestamp >= from && e.timestamp < to);
  switch (meter.default_aggregation.formula) {
    case 'count':
      return events.length;
    case 'last':
      return events.length ? events[events.length - 1].value : 0;
    default:
      return events.reduce((a, e) => a + e.value, 0);
  }
}

// The line of a full period of `price`. A metered price is billed in arrears: its line is the
// usage in `usageWindow` (none by default) times the unit amount.
export function periodLine(store: Store, sub: Subscription, price: Stripe.Price, quantity: number,
                           start: number, end: number, usageWindow?: [number, number]): InvoiceLine {
  if (isMetered(price)) {
    const used = usageWindow ? usage(store, price, sub.customer as string, usageWindow[0], usageWindow[1]) : 0;
    return newLine(store, {
      price, quantity: used, amount: (price.unit_amount ?? 0) * used, start, end,
      description: `${used} × ${productName(store, price)} (metered, at ${money(price.unit_amount ?? 0, price.currency)} each)`,
      subscription: sub, proration: false,
    });
  }
  return newLine(store, {
    price, quantity, amount: (price.unit_amount ?? 0) * quantity, start, end,
    description: `${quantity} × ${productName(store, price)} (at ${money(price.unit_amount ?? 0, price.currency)} / ${interval(price).interval})`,
    subscription: sub, proration: false,
  });
}

function money(amount: number, currency: string): string {
  return `${(amount / 100).toFixed(2)} ${currency.toUpperCase()}`;
}

// Proration lines for replacing (oldPrice, oldQty) with (newPrice, newQty) at `at`.
export function prorationLines(
  store: Store, sub: Subscription, oldPrice: Stripe.Price, oldQty: number,
  newPrice: Stripe.Price, newQty: number, at: number,
): { lines: InvoiceLine[]; resetsCycle: boolean } {
  const s = sub.current_period_start;
  const e = sub.current_period_end;
  const total = Math.max(1, e - s);
  const remaining = Math.max(0, Math.min(e - at, total));
  const date = new Date(at * 1000).toISOString().slice(0, 10);
  const oldR = interval(oldPrice);
  const newR = interval(newPrice);
  const resetsCycle = oldR.interval !== newR.interval || oldR.interval_count !== newR.interval_count;
  const lines: InvoiceLine[] = [];
  if (sub.status === 'trialing') return { lines, resetsCycle };
  // Metered prices are billed in arrears for what was used: nothing to prorate.
  const credit = isMetered(oldPrice) ? 0 : Math.round(((oldPrice.unit_amount ?? 0) * oldQty * remaining) / total);
  if (credit !== 0) {
    lines.push(newLine(store, {
      price: oldPrice, quantity: oldQty, amount: -credit, start: at, end: e,
      description: `Unused time on ${oldQty} × ${productName(store, oldPrice)} after ${date}`,
      subscription: sub, proration: true, prorationDate: at,
    }));
  }
  if (resetsCycle) {
    const end = addInterval(at, newR.interval, newR.interval_count);
    lines.push(periodLine(store, sub, newPrice, newQty, at, end));
  } else {
    const charge = isMetered(newPrice) ? 0 : Math.round(((newPrice.unit_amount ?? 0) * newQty * remaining) / total);
    if (charge !== 0) {
      lines.push(newLine(store, {
        price: newPrice, quantity: newQty, amount: charge, start: at, end: e,
        description: `Remaining time on ${newQty} × ${productName(store, newPrice)} after ${date}`,
        subscription: sub, proration: true, prorationDate: at,
      }));
    }
  }
  return { lines, resetsCycle };
}

// A draft invoice over `lines` (not stored): for previews, and the base of real invoices.
export function draftInvoice(
  store: Store, customerId: string, sub: Subscription | null, lines: InvoiceLine[],
  reason: Stripe.Invoice.BillingReason, id: string, prorationDate?: number,
): Invoice {
  const customer = store.customer(customerId);
  const now = store.nowFor(customerId);
  const total = lines.reduce((a, l) => a + l.amount, 0);
  const balance = customer.balance;
  // A credit balance (negative) pays what it can; a negative total adds to the credit.
  const applied = total > 0 && balance < 0 ? Math.min(total, -balance) : 0;
  const due = total > 0 ? total - applied : 0;
  for (const l of lines) l.invoice = id;
  const currency = lines[0]?.currency ?? sub?.currency ?? 'usd';
  const starts = lines.map((l) => l.period.start);
  const ends = lines.map((l) => l.period.end);
  const details: Stripe.Invoice.Parent.SubscriptionDetails | null = sub
    ? { metadata: sub.metadata, subscription: sub.id }
    : null;
  if (details && prorationDate !== undefined) details.subscription_proration_date = prorationDate;
  return {
    id,
    object: 'invoice',
    account_country: 'US',
    account_name: 'HSEA Stripe emulator',
    account_tax_ids: null,
    amount_due: due,
    amount_overpaid: 0,
    amount_paid: 0,
    amount_remaining: due,
    amount_shipping: 0,
    application: null,
    attempt_count: 0,
    attempted: false,
    auto_advance: true,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
    automatically_finalizes_at: null,
    billing_reason: reason,
    collection_method: 'charge_automatically',
    created: now,
    currency,
    custom_fields: null,
    customer: customerId,
    customer_account: null,
    customer_address: null,
    customer_email: customer.email,
    customer_name: customer.name ?? null,
    customer_phone: customer.phone ?? null,
    customer_shipping: null,
    customer_tax_exempt: 'none',
    customer_tax_ids: [],
    default_payment_method: null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    due_date: null,
    effective_at: null,
    ending_balance: null,
    footer: null,
    from_invoice: null,
    hosted_invoice_url: null,
    invoice_pdf: null,
    issuer: { type: 'self' },
    last_finalization_error: null,
    latest_revision: null,
    lines: { object: 'list', data: lines, has_more: false, url: `/v1/invoices/${id}/lines` },
    livemode: false,
    metadata: {},
    next_payment_attempt: null,
    number: null,
    on_behalf_of: null,
    parent: details
      ? { type: 'subscription_details', quote_details: null, subscription_details: details }
      : null,
    payment_settings: { default_mandate: null, payment_method_options: null, payment_method_types: null },
    period_end: ends.length ? Math.max(...ends) : now,
    period_start: starts.length ? Math.min(...starts) : now,
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: balance,
    statement_descriptor: null,
    status: 'draft',
    status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
    subtotal: total,
    subtotal_excluding_tax: total,
    test_clock: store.clockOf(customerId),
    total,
    total_discount_amounts: [],
    total_excluding_tax: total,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: null,
    subscription: sub?.id ?? null,
    paid: false,
    tax: null,
    total_tax_amounts: [],
    charge: null,
    payment_intent: null,
    ...(prorationDate !== undefined ? { subscription_proration_date: prorationDate } : {}),
  };
}

// Creates, stores and finalizes an invoice (events invoice.created + invoice.finalized); the
// customer's balance moves by what it paid or what a negative total credited.
export function issueInvoice(
  emu: Emulator, customerId: string, sub: Subscription | null, lines: InvoiceLine[],
  reason: Stripe.Invoice.BillingReason,
): Invoice {
  const { store, webhooks } = emu;
  const inv = draftInvoice(store, customerId, sub, lines, reason, store.id('in'));
  const customer = store.customer(customerId);
  customer.balance = inv.starting_balance + (inv.total - inv.amount_due);
  store.invoices.set(inv.id, inv);
  webhooks.emit('invoice.created', inv);
  const now = store.nowFor(customerId);
  inv.status = 'open';
  inv.number = `EMU-${String(++store.invoiceCounter).padStart(6, '0')}`;
  inv.status_transitions.finalized_at = now;
  inv.effective_at = now;
  inv.ending_balance = customer.balance;
  inv.hosted_invoice_url = `${emu.baseUrl}/invoices/${inv.id}`;
  inv.invoice_pdf = `${emu.baseUrl}/invoices/${inv.id}/pdf`;
  webhooks.emit('invoice.finalized', inv);
  if (sub) {
    sub.latest_invoice = inv.id;
  }
  if (inv.amount_due === 0) markPaid(emu, inv);
  return inv;
}

function markPaid(emu: Emulator, inv: Invoice): void {
  const now = emu.store.nowFor(inv.customer as string);
  inv.status = 'paid';
  inv.paid = true;
  inv.amount_paid = inv.amount_due;
  inv.amount_remaining = 0;
  inv.next_payment_attempt = null;
  inv.status_transitions.paid_at = now;
  emu.webhooks.emit('invoice.paid', inv);
  emu.webhooks.emit('invoice.payment_succeeded', inv);
}

export function paymentMethodFor(store: Store, inv: Invoice): string | null {
  const sub = inv.subscription ? store.subscriptions.get(inv.subscription) : undefined;
  const fromSub = sub?.default_payment_method;
  const cus = store.customers.get(inv.customer as string);
  const candidates = [inv.default_payment_method, fromSub, cus?.invoice_settings.default_payment_method];
  for (const c of candidates) {
    if (typeof c === 'string' && store.paymentMethods.get(c)?.customer === inv.customer) return c;
  }
  return null;
}

// One payment attempt. Returns null on success, else the decline.
export function attemptPayment(emu: Emulator, inv: Invoice, automatic: boolean, pmOverride?: string): StripeError | null {
  const { store, webhooks } = emu;
  if (inv.status === 'paid') return null;
  if (inv.status !== 'open') {
    return StripeError.invalid(`Invoice is ${inv.status}; only open invoices can be paid.`, undefined, 'invoice_not_editable');
  }
  const customerId = inv.customer as string;
  const now = store.nowFor(customerId);
  const pm = pmOverride ?? paymentMethodFor(store, inv);
  let decline: StripeError | null = null;
  const failNext = store.failNextCharges.get(customerId) ?? 0;
  if (!pm) {
    decline = StripeError.invalid(
      'This customer has no attached payment source or default payment method.', undefined,
      'invoice_no_customer_line_items');
    decline = new StripeError(402, 'card_error', decline.message, 'card_declined', undefined, { decline_code: 'no_payment_method' });
  } else if (failNext > 0) {
    store.failNextCharges.set(customerId, failNext - 1);
    decline = StripeError.card('Your card was declined.', 'generic_decline');
  } else if (store.failingPaymentMethods.has(pm)) {
    decline = StripeError.card('Your card was declined.', 'generic_decline');
  }
  inv.attempt_count++;
  inv.attempted = true;
  const sub = inv.subscription ? store.subscriptions.get(inv.subscription) : undefined;
  if (!decline) {
    markPaid(emu, inv);
    if (sub && ['past_due', 'unpaid', 'incomplete'].includes(sub.status)) {
      const stillOpen = Array.from(store.invoices.values()).some(
        (i) => i.subscription === sub.id && i.status === 'open');
      if (!stillOpen) setStatus(emu, sub, 'active');
    }
    return null;
  }
  // A failed attempt: schedule the next automatic retry (manual attempts keep the schedule).
  if (automatic) {
    const retriesDone = inv.attempt_count - 1;
    const next = dunning.retryDays[retriesDone];
    inv.next_payment_attempt = next === undefined ? null : now + next * 86400;
  }
  webhooks.emit('invoice.payment_failed', inv);
  if (sub) {
    if (sub.status === 'active' || sub.status === 'trialing') setStatus(emu, sub, 'past_due');
    if (automatic && inv.next_payment_attempt === null && sub.status === 'past_due') {
      if (dunning.finalStatus === 'canceled') cancelNow(emu, sub, 'payment_failed');
      else setStatus(emu, sub, 'unpaid');
    }
  }
  return decline;
}

export function setStatus(emu: Emulator, sub: Subscription, status: Stripe.Subscription.Status): void {
  if (sub.status === status) return;
  const previous = { status: sub.status };
  sub.status = status;
  emu.webhooks.emit('customer.subscription.updated', sub, previous);
}

export function cancelNow(emu: Emulator, sub: Subscription, reason: Stripe.Subscription.CancellationDetails.Reason): void {
  const now = emu.store.nowFor(sub.customer as string);
  sub.status = 'canceled';
  sub.canceled_at = sub.canceled_at ?? now;
  sub.ended_at = now;
  sub.cancellation_details = { comment: null, feedback: null, feedback_option: null, reason };
  emu.store.pendingItems = emu.store.pendingItems.filter((p) => p.subscription !== sub.id);
  emu.webhooks.emit('customer.subscription.deleted', sub);
}

// Sets the subscription's (single) item to `price`/`quantity` over [start, end).
export function setPeriod(sub: Subscription, start: number, end: number): void {
  sub.current_period_start = start;
  sub.current_period_end = end;
  for (const it of sub.items.data) {
    it.current_period_start = start;
    it.current_period_end = end;
  }
}

export function setPrice(sub: Subscription, price: Stripe.Price, quantity: number): void {
  const it = sub.items.data[0];
  it.price = price;
  it.plan = planOf(price);
  it.quantity = quantity;
  sub.plan = it.plan;
  sub.quantity = quantity;
  sub.currency = price.currency;
}
