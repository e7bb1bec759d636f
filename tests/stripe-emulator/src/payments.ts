// Charging invoices and the dunning that follows a decline.
//
// Payments: an invoice is charged to its default payment method, else the subscription's, else
// the customer's invoice_settings.default_payment_method. The charge is declined when there is
// none, when the method is a failing test card (pm_card_chargeCustomerFail) or when the control
// API asked to fail the customer's next charges.
//
// Dunning (Smart-Retries-like, deterministic): after a failed automatic attempt the invoice is
// retried `retryDays` later (default 3, 5 and 7 days after each previous attempt, so four attempts
// in 15 days); while retries remain the subscription is past_due; when the last one fails the
// subscription becomes `finalStatus` (default "canceled"; or "unpaid"; or "past_due": left as it
// is, Stripe's "leave the subscription past-due", for tests where HSEA runs its own dunning). A successful payment of
// the subscription's latest invoice makes it active again (its status follows its latest invoice,
// as on Stripe).
import { StripeError } from './errors';
import { markPaid } from './invoicing';
import type { Emulator } from './router';
import type { Invoice, Store } from './store';
import { cancelNow, setStatus } from './subscription_state';

export const dunning = {
  retryDays: [3, 5, 7],
  finalStatus: 'canceled' as 'canceled' | 'unpaid' | 'past_due',
};

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
  if (inv.status !== 'open' && inv.status !== 'uncollectible') {
    return StripeError.invalid(`Invoice is ${inv.status}; only open invoices can be paid.`, undefined, 'invoice_not_editable');
  }
  const customerId = inv.customer as string;
  const now = store.nowFor(customerId);
  const pm = pmOverride ?? paymentMethodFor(store, inv);
  let decline: StripeError | null = null;
  const failNext = store.failNextCharges.get(customerId) ?? 0;
  if (!pm) {
    decline = StripeError.invalid(
      'This customer has no attached payment source or default payment method. Please consider adding a default payment method.');
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
    // As on Stripe, the subscription's status follows its latest invoice.
    if (sub && sub.latest_invoice === inv.id && ['past_due', 'unpaid', 'incomplete'].includes(sub.status)) {
      setStatus(emu, sub, 'active');
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
  if (sub && sub.latest_invoice === inv.id) {
    if (sub.status === 'active' || sub.status === 'trialing') setStatus(emu, sub, 'past_due');
    if (automatic && inv.next_payment_attempt === null && sub.status === 'past_due') {
      if (dunning.finalStatus === 'canceled') cancelNow(emu, sub, 'payment_failed');
      else if (dunning.finalStatus === 'unpaid') setStatus(emu, sub, 'unpaid');
    }
  }
  return decline;
}

