// Invoices: drafts (also the previews) and issued invoices, finalized at once, with the
// customer's credit balance applied.
import type Stripe from 'stripe';

import type { Emulator } from './router';
import type { Invoice, InvoiceLine, Store, Subscription } from './store';

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
// customer's balance moves by what it paid or what a negative total credited. With `finalizeAt`
// the invoice stays a draft until then (a renewal's finalization grace period, clock.ts), and
// finalizeInvoice finishes it.
export function issueInvoice(
  emu: Emulator, customerId: string, sub: Subscription | null, lines: InvoiceLine[],
  reason: Stripe.Invoice.BillingReason, finalizeAt?: number,
): Invoice {
  const { store, webhooks } = emu;
  const inv = draftInvoice(store, customerId, sub, lines, reason, store.id('in'));
  store.invoices.set(inv.id, inv);
  if (finalizeAt !== undefined) inv.automatically_finalizes_at = finalizeAt;
  webhooks.emit('invoice.created', inv);
  // Stripe's latest_invoice names a renewal's invoice from its creation, a draft included.
  if (sub) sub.latest_invoice = inv.id;
  if (finalizeAt === undefined) finalizeInvoice(emu, inv);
  return inv;
}

// Finalizes a draft: its totals from its lines as they are now (the customer's credit applied
// now), open with a number, invoice.finalized; paid at once when nothing is due.
export function finalizeInvoice(emu: Emulator, inv: Invoice): void {
  const { store, webhooks } = emu;
  const customerId = inv.customer as string;
  const customer = store.customer(customerId);
  const lines = inv.lines.data as InvoiceLine[];
  const total = lines.reduce((a, l) => a + l.amount, 0);
  const balance = customer.balance;
  const applied = total > 0 && balance < 0 ? Math.min(total, -balance) : 0;
  const due = total > 0 ? total - applied : 0;
  Object.assign(inv, {
    total, subtotal: total, subtotal_excluding_tax: total, total_excluding_tax: total,
    amount_due: due, amount_remaining: due, starting_balance: balance,
  });
  customer.balance = inv.starting_balance + (inv.total - inv.amount_due);
  const now = store.nowFor(customerId);
  inv.status = 'open';
  inv.automatically_finalizes_at = null;
  inv.number = `EMU-${String(++store.invoiceCounter).padStart(6, '0')}`;
  inv.status_transitions.finalized_at = now;
  inv.effective_at = now;
  inv.ending_balance = customer.balance;
  inv.hosted_invoice_url = `${emu.baseUrl}/invoices/${inv.id}`;
  inv.invoice_pdf = `${emu.baseUrl}/invoices/${inv.id}/pdf`;
  webhooks.emit('invoice.finalized', inv);
  if (inv.amount_due === 0) markPaid(emu, inv);
}

export function markPaid(emu: Emulator, inv: Invoice): void {
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

