// Subscriptions with one or more items (items.ts): create (trial or charged at once), retrieve,
// update (items replaced, added or deleted with proration, billing_cycle_anchor now,
// cancel_at_period_end, trial_end), cancel, list. Rules: lines.ts (proration), payments.ts (charging, dunning).
import type Stripe from 'stripe';

import {
  Params, allowOnly, applyMetadata, bool, hash, int, oneOf, reqStr, str,
} from '../encoding';
import { StripeError } from '../errors';
import { issueInvoice } from '../invoicing';
import { interval, periodLine } from '../lines';
import { attemptPayment } from '../payments';
import { cancelNow, setPeriod } from '../subscription_state';
import { applyChange, checkTogether, finalLines, flatItem, itemsOf, newItem, planChange, quantityFor, restartLines, syncItems } from '../items';
import { addInterval } from '../periods';
import type { Ctx, Emulator, Route } from '../router';
import { Subscription, newestFirst, paginate } from '../store';

const kProration = ['create_prorations', 'always_invoice', 'none'] as const;

// trial_end: a timestamp or "now".
function trialEndOf(p: Params, now: number): number | 'now' | undefined {
  const v = str(p, 'trial_end');
  if (v === undefined || v === '') return undefined;
  if (v === 'now') return 'now';
  const t = int(p, 'trial_end');
  if (t === undefined || t <= now) {
    throw StripeError.invalid('Invalid timestamp: must be an integer Unix timestamp in the future.', 'trial_end');
  }
  return t;
}

export function newSubscription(
  emu: Emulator, customerId: string, items: { price: Stripe.Price; quantity: number | undefined }[], opts: {
    trialEnd?: number; metadata?: Record<string, string>; defaultPaymentMethod?: string | null;
    cancelAtPeriodEnd?: boolean; paymentBehavior?: string;
  },
): Subscription {
  const { store } = emu;
  const now = store.nowFor(customerId);
  const price = items[0].price;
  const r = interval(price);
  const trialing = opts.trialEnd !== undefined;
  const start = now;
  const end = trialing ? (opts.trialEnd as number) : addInterval(now, r.interval, r.interval_count);
  const id = store.id('sub');
  const sub: Subscription = {
    id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: end,
    billing_cycle_anchor_config: null,
    billing_mode: { flexible: null, type: 'classic' },
    billing_schedules: [],
    billing_thresholds: null,
    cancel_at: null,
    cancel_at_period_end: opts.cancelAtPeriodEnd ?? false,
    canceled_at: null,
    cancellation_details: { comment: null, feedback: null, feedback_option: null, reason: null },
    collection_method: 'charge_automatically',
    created: now,
    currency: price.currency,
    customer: customerId,
    customer_account: null,
    days_until_due: null,
    default_payment_method: opts.defaultPaymentMethod ?? null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    ended_at: null,
    invoice_settings: { account_tax_ids: null, custom_fields: null, description: null, footer: null, issuer: { type: 'self' } },
    items: {
      object: 'list', has_more: false, url: `/v1/subscription_items?subscription=${id}`,
      data: items.map((x) => newItem(store, id, x.price, x.quantity, start, end, now)),
    },
    latest_invoice: null,
    livemode: false,
    managed_payments: null,
    metadata: opts.metadata ?? {},
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    payment_settings: { payment_method_options: null, payment_method_types: null, save_default_payment_method: 'off' },
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: now,
    status: trialing ? 'trialing' : 'incomplete',
    test_clock: store.clockOf(customerId),
    transfer_data: null,
    trial_end: trialing ? (opts.trialEnd as number) : null,
    trial_settings: { end_behavior: { missing_payment_method: 'create_invoice' } },
    trial_start: trialing ? now : null,
    current_period_start: start,
    current_period_end: end,
    plan: null,
    quantity: null,
  };
  syncItems(sub);
  if (!trialing) sub.billing_cycle_anchor = now;
  store.subscriptions.set(id, sub);
  emu.webhooks.emit('customer.subscription.created', sub);
  // The first invoice: zero for a trial (paid at once), else the first period, charged now.
  // (A metered item's line is zero: nothing used yet.)
  const firstLines = items.map((x) => {
    const line = trialing
      ? periodLine(store, sub, { ...x.price, unit_amount: 0 }, x.quantity ?? 0, start, end)
      : periodLine(store, sub, x.price, x.quantity ?? 0, start, end);
    if (trialing) line.description = `Trial period for ${line.description}`;
    return line;
  });
  const inv = issueInvoice(emu, customerId, sub, firstLines, 'subscription_create');
  if (!trialing) {
    if (opts.paymentBehavior === 'default_incomplete') return sub;
    const decline = attemptPayment(emu, inv, false);
    if (!decline) {
      if (sub.status === 'incomplete') {
        sub.status = 'active';
        emu.webhooks.emit('customer.subscription.updated', sub, { status: 'incomplete' });
      }
    } else if (opts.paymentBehavior === 'error_if_incomplete') {
      throw decline;
    }
  }
  return sub;
}

function create(ctx: Ctx): Subscription {
  const { store } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['customer', 'items', 'default_payment_method', 'trial_period_days', 'trial_end',
                'cancel_at_period_end', 'metadata', 'payment_behavior', 'proration_behavior',
                'collection_method', 'off_session', 'description',
                // Accepted and ignored (no taxes; the card is kept as the default anyway).
                'automatic_tax', 'payment_settings']);
  const customerId = store.customer(reqStr(p, 'customer'), 'customer').id;
  const params = itemsOf(p);
  if (params.length === 0) throw StripeError.invalid('Missing required param: items.', 'items', 'parameter_missing');
  const items = params.map((it, i) => {
    if (!it.price) throw StripeError.invalid(`Missing required param: items[${i}][price].`, `items[${i}][price]`, 'parameter_missing');
    const price = store.activePrice(it.price, `items[${i}][price]`);
    interval(price);
    return { price, quantity: quantityFor(price, it.quantity, `items[${i}][quantity]`) };
  });
  checkTogether(items.map((x) => x.price), 'items');
  const now = store.nowFor(customerId);
  const days = int(p, 'trial_period_days');
  const te = trialEndOf(p, now);
  const trialEnd = te === 'now' ? undefined : te ?? (days ? now + days * 86400 : undefined);
  const pm = str(p, 'default_payment_method');
  if (pm && store.paymentMethods.get(pm)?.customer !== customerId) {
    throw StripeError.missing('PaymentMethod', pm, 'default_payment_method');
  }
  return newSubscription(ctx.emu, customerId, items, {
    trialEnd,
    metadata: applyMetadata({}, p),
    defaultPaymentMethod: pm ?? null,
    cancelAtPeriodEnd: bool(p, 'cancel_at_period_end'),
    paymentBehavior: oneOf(p, 'payment_behavior',
      ['allow_incomplete', 'default_incomplete', 'error_if_incomplete', 'pending_if_incomplete'] as const),
  });
}

function update(ctx: Ctx): Subscription {
  const { store, webhooks } = ctx.emu;
  const sub = store.subscription(ctx.path[0], 'subscription_exposed_id');
  const p = ctx.params;
  allowOnly(p, ['items', 'proration_behavior', 'proration_date', 'cancel_at_period_end', 'cancel_at',
                'trial_end', 'metadata', 'default_payment_method', 'payment_behavior',
                'billing_cycle_anchor', 'description', 'off_session', 'automatic_tax',
                'payment_settings']);
  if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
    throw StripeError.invalid(
      `A canceled subscription can only update its cancellation_details and metadata.`,
      undefined, 'invalid_canceled_subscription_fields');
  }
  const customerId = sub.customer as string;
  const now = store.nowFor(customerId);
  const before = JSON.parse(JSON.stringify(sub)) as Record<string, unknown>;
  const behavior = oneOf(p, 'proration_behavior', kProration) ?? 'create_prorations';
  const at = int(p, 'proration_date') ?? now;
  if (at < sub.current_period_start || at > sub.current_period_end) {
    throw StripeError.invalid('proration_date must be within the current period.', 'proration_date');
  }
  const pm = str(p, 'default_payment_method');
  if (pm !== undefined) {
    if (pm && store.paymentMethods.get(pm)?.customer !== customerId) {
      throw StripeError.missing('PaymentMethod', pm, 'default_payment_method');
    }
    sub.default_payment_method = pm || null;
  }
  const cape = bool(p, 'cancel_at_period_end');
  if (cape !== undefined) {
    sub.cancel_at_period_end = cape;
    sub.cancel_at = cape ? sub.current_period_end : null;
    sub.canceled_at = cape ? now : null;
    sub.cancellation_details = { comment: null, feedback: null, feedback_option: null, reason: cape ? 'cancellation_requested' : null };
  }
  const cancelAt = str(p, 'cancel_at');
  if (cancelAt !== undefined) {
    sub.cancel_at = cancelAt === '' ? null : int(p, 'cancel_at') ?? null;
  }
  sub.metadata = applyMetadata(sub.metadata, p);
  const te = trialEndOf(p, now);
  let invoiceNow = false;
  if (te !== undefined) {
    if (te === 'now') {
      if (sub.status === 'trialing') {
        const r = interval(flatItem(sub).price);
        sub.trial_end = now;
        setPeriod(sub, now, addInterval(now, r.interval, r.interval_count));
        sub.billing_cycle_anchor = now;
        sub.status = 'active';
        invoiceNow = true;
      }
    } else {
      store.trialWillEndSent.delete(sub.id);
      sub.trial_end = te;
      sub.status = 'trialing';
      setPeriod(sub, sub.current_period_start, te);
    }
  }
  const anchor = oneOf(p, 'billing_cycle_anchor', ['now', 'unchanged'] as const);
  const change = planChange(store, sub, itemsOf(p), at, 'items');
  const lines = [];
  // billing_cycle_anchor=now, or a new interval, ends the period at `at` and starts a new one,
  // invoiced now (Stripe: "Reset the anchor to the current time using billing_cycle_anchor=now ...
  // this results in the customer being invoiced immediately"): the period so far (its credits,
  // the usage of its metered items) and the new period ahead; `none` only drops the credit.
  if ((anchor === 'now' || (change.changed && change.resetsCycle)) && sub.status !== 'trialing') {
    // Priced before the change applies (it replaces prices in place).
    lines.push(...restartLines(store, sub, sub.items.data, change.items, at, behavior));
    if (change.changed) applyChange(store, sub, change, at);
    const r = interval(flatItem(sub).price);
    setPeriod(sub, at, addInterval(at, r.interval, r.interval_count));
    sub.billing_cycle_anchor = at;
    invoiceNow = true;
  } else if (change.changed) {
    applyChange(store, sub, change, at);
    if (behavior !== 'none') {
      if (behavior === 'always_invoice') {
        lines.push(...change.lines);
        invoiceNow = true;
      } else {
        for (const line of change.lines) store.pendingItems.push({ customer: customerId, subscription: sub.id, line });
      }
    }
  }
  const previous: Record<string, unknown> = {};
  for (const k of Object.keys(before)) {
    if (JSON.stringify(before[k]) !== JSON.stringify((sub as unknown as Record<string, unknown>)[k])) {
      previous[k] = before[k];
    }
  }
  if (Object.keys(previous).length) webhooks.emit('customer.subscription.updated', sub, previous);
  if (invoiceNow) {
    if (lines.length === 0) {
      for (const it of sub.items.data) {
        lines.push(periodLine(store, sub, it.price, it.quantity ?? 0, sub.current_period_start, sub.current_period_end));
      }
    }
    // Pending proration items go on the invoice made now, as Stripe does.
    const pending = store.pendingItems.filter((x) => x.subscription === sub.id);
    store.pendingItems = store.pendingItems.filter((x) => x.subscription !== sub.id);
    const inv = issueInvoice(ctx.emu, customerId, sub, [...pending.map((x) => x.line), ...lines], 'subscription_update');
    if (inv.status === 'open') {
      const decline = attemptPayment(ctx.emu, inv, true);
      if (decline && p.payment_behavior === 'error_if_incomplete') throw decline;
    }
  }
  return sub;
}

function cancel(ctx: Ctx): Subscription {
  const { store } = ctx.emu;
  const sub = store.subscription(ctx.path[0], 'subscription_exposed_id');
  allowOnly(ctx.params, ['invoice_now', 'prorate', 'cancellation_details']);
  if (sub.status === 'canceled') {
    throw StripeError.invalid(`No such subscription: '${sub.id}'`, 'subscription_exposed_id', 'resource_missing');
  }
  const details = hash(ctx.params, 'cancellation_details');
  // Both default to false (Stripe's API reference, "Cancel a subscription"): without invoice_now
  // the period's metered usage is never billed and pending prorations are dropped.
  const invoiceNow = bool(ctx.params, 'invoice_now') ?? false;
  const prorate = bool(ctx.params, 'prorate') ?? false;
  if (prorate && !invoiceNow) {
    // Stripe would leave the credit as a pending item of the customer's next invoice.
    throw StripeError.invalid('The emulator does not implement prorate=true without invoice_now=true.', 'prorate');
  }
  if (invoiceNow && sub.status !== 'incomplete' && sub.status !== 'incomplete_expired') {
    const lines = finalLines(store, sub, store.nowFor(sub.customer as string), prorate);
    if (lines.length > 0) {
      const inv = issueInvoice(ctx.emu, sub.customer as string, sub, lines, 'subscription_update');
      if (inv.status === 'open') attemptPayment(ctx.emu, inv, true);
    }
  }
  cancelNow(ctx.emu, sub, 'cancellation_requested');
  if (details) sub.cancellation_details = { ...sub.cancellation_details!, comment: str(details, 'comment') ?? null };
  return sub;
}

function listSubs(ctx: Ctx) {
  const q = ctx.params;
  const customer = str(q, 'customer');
  const price = str(q, 'price');
  const status = str(q, 'status');
  const all = newestFirst(ctx.emu.store.subscriptions).filter(
    (s) =>
      (!customer || s.customer === customer) &&
      (!price || s.items.data.some((i) => i.price.id === price)) &&
      (status === 'all' || (status ? s.status === status : s.status !== 'canceled')));
  return paginate(all, q, '/v1/subscriptions');
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/subscriptions', handler: create },
  { method: 'GET', path: '/v1/subscriptions/:id', handler: (ctx) => ctx.emu.store.subscription(ctx.path[0], 'subscription_exposed_id') },
  { method: 'POST', path: '/v1/subscriptions/:id', handler: update },
  { method: 'DELETE', path: '/v1/subscriptions/:id', handler: cancel },
  { method: 'GET', path: '/v1/subscriptions', handler: listSubs },
  {
    method: 'GET',
    path: '/v1/subscription_items/:id',
    handler: (ctx) => {
      for (const s of ctx.emu.store.subscriptions.values()) {
        const it = s.items.data.find((i) => i.id === ctx.path[0]);
        if (it) return it;
      }
      throw StripeError.missing('subscription_item', ctx.path[0], 'id');
    },
  },
];
