// Invoices: list, retrieve, lines, pay; and the preview of the next invoice for a subscription
// change, in both shapes: GET /v1/invoices/upcoming (subscription_items, subscription_proration_date)
// and POST /v1/invoices/create_preview (subscription_details[items], [proration_date]), which
// the pinned SDK uses. The preview holds the pending items plus the proration lines of the change
// (lines.ts) plus the next period at the new price; when the change would be invoiced at once
// (proration_behavior always_invoice, or a new interval) it is that invoice instead: pending
// items and prorations (and the new period; with billing_cycle_anchor=now or a new interval also
// the metered usage so far, items.ts restartLines). Nothing is stored or charged.
import { Params, hash, int, list, oneOf, str } from '../encoding';
import { StripeError } from '../errors';
import { draftInvoice } from '../invoicing';
import { itemsOf, planChange, restartLines, usageSince } from '../items';
import { interval, isMetered, periodLine } from '../lines';
import { attemptPayment } from '../payments';
import { addInterval } from '../periods';
import type { Ctx, Route } from '../router';
import { Invoice, InvoiceLine, newestFirst, paginate } from '../store';

function preview(ctx: Ctx, p: Params, itemsKey: string, details: Params, prefix: string): Invoice {
  const { store } = ctx.emu;
  const subId = str(p, 'subscription');
  let customer = str(p, 'customer');
  if (!subId) {
    throw StripeError.invalid('The emulator previews subscription invoices: pass subscription.', 'subscription', 'parameter_missing');
  }
  const sub = store.subscription(subId);
  if (customer && customer !== sub.customer) throw StripeError.invalid('The subscription belongs to another customer.', 'customer');
  customer = sub.customer as string;
  const now = store.nowFor(customer);
  const at = int(details, 'proration_date', `${prefix}proration_date`) ?? now;
  const behavior = oneOf(details, 'proration_behavior', ['create_prorations', 'always_invoice', 'none'] as const,
                         `${prefix}proration_behavior`) ?? 'create_prorations';
  const anchor = oneOf(details, 'billing_cycle_anchor', ['now', 'unchanged'] as const, `${prefix}billing_cycle_anchor`);
  const change = planChange(store, sub, itemsOf(details, itemsKey, prefix), at, prefix.endsWith("[") ? `${prefix}${itemsKey}]` : `${prefix}${itemsKey}`);
  const lines: InvoiceLine[] = store.pendingItems.filter((x) => x.subscription === sub.id).map((x) => ({ ...x.line }));
  const changed = change.changed;
  // The period ends at `at` (billing_cycle_anchor=now, a new interval): that invoice.
  const resets = (anchor === 'now' || (changed && change.resetsCycle)) && sub.status !== 'trialing';
  if (resets) lines.push(...restartLines(store, sub, sub.items.data, change.items, at, behavior));
  else if (changed && behavior !== 'none') lines.push(...change.lines);
  // A change invoiced at once previews that invoice; otherwise the next renewal's: the usage so
  // far of the metered items kept (a deleted one bills nothing), the next period of licensed ones.
  if (!(resets || (changed && behavior === 'always_invoice'))) {
    for (const it of change.items) {
      if (isMetered(it.price)) {
        const kept = sub.items.data.find((x) => x.id === it.id);
        const since = Math.max(sub.current_period_start,
                               kept && kept.price.id === it.price.id ? usageSince(store, kept) : at);
        lines.push(periodLine(store, sub, it.price, 0, sub.current_period_start, sub.current_period_end, [since, now + 1]));
      } else {
        const r = interval(it.price);
        const start = sub.current_period_end;
        lines.push(periodLine(store, sub, it.price, it.quantity ?? 1, start, addInterval(start, r.interval, r.interval_count)));
      }
    }
  }
  const inv = draftInvoice(store, customer, sub, lines, 'upcoming', store.id('upcoming_in'), changed ? at : undefined);
  return inv;
}

export const routes: Route[] = [
  {
    method: 'GET',
    path: '/v1/invoices/upcoming',
    handler: (ctx) => {
      const p = ctx.params;
      const details: Params = {};
      if (p.subscription_items !== undefined) details.items = p.subscription_items;
      if (p.subscription_proration_date !== undefined) details.proration_date = p.subscription_proration_date;
      if (p.subscription_proration_behavior !== undefined) details.proration_behavior = p.subscription_proration_behavior;
      if (p.subscription_billing_cycle_anchor !== undefined) details.billing_cycle_anchor = p.subscription_billing_cycle_anchor;
      return preview(ctx, p, 'items', details, 'subscription_');
    },
  },
  {
    method: 'POST',
    path: '/v1/invoices/create_preview',
    handler: (ctx) => preview(ctx, ctx.params, 'items', hash(ctx.params, 'subscription_details') ?? {},
                              'subscription_details[') ,
  },
  {
    method: 'GET',
    path: '/v1/invoices',
    handler: (ctx) => {
      const q = ctx.params;
      const customer = str(q, 'customer');
      const sub = str(q, 'subscription');
      const status = str(q, 'status');
      const all = newestFirst(ctx.emu.store.invoices).filter(
        (i) => (!customer || i.customer === customer) && (!sub || i.subscription === sub) && (!status || i.status === status));
      return paginate(all, q, '/v1/invoices');
    },
  },
  { method: 'GET', path: '/v1/invoices/:id', handler: (ctx) => ctx.emu.store.invoice(ctx.path[0], 'invoice') },
  {
    method: 'GET',
    path: '/v1/invoices/:id/lines',
    handler: (ctx) => {
      const inv = ctx.emu.store.invoice(ctx.path[0], 'invoice');
      return paginate(inv.lines.data, ctx.params, `/v1/invoices/${inv.id}/lines`);
    },
  },
  {
    method: 'POST',
    path: '/v1/invoices/:id/void',
    handler: (ctx) => {
      const inv = ctx.emu.store.invoice(ctx.path[0], 'invoice');
      if (inv.status !== 'open') throw StripeError.invalid(`You can only void an open invoice (this one is ${inv.status}).`);
      inv.status = 'void';
      inv.next_payment_attempt = null;
      inv.status_transitions.voided_at = ctx.emu.store.nowFor(inv.customer as string);
      ctx.emu.webhooks.emit('invoice.voided', inv);
      return inv;
    },
  },
  {
    method: 'POST',
    path: '/v1/invoices/:id/mark_uncollectible',
    handler: (ctx) => {
      const inv = ctx.emu.store.invoice(ctx.path[0], 'invoice');
      if (inv.status !== 'open') throw StripeError.invalid(`Only an open invoice can be marked uncollectible (this one is ${inv.status}).`);
      inv.status = 'uncollectible';
      inv.next_payment_attempt = null;
      inv.status_transitions.marked_uncollectible_at = ctx.emu.store.nowFor(inv.customer as string);
      ctx.emu.webhooks.emit('invoice.marked_uncollectible', inv);
      return inv;
    },
  },
  {
    method: 'POST',
    path: '/v1/invoices/:id/pay',
    handler: (ctx) => {
      const { store } = ctx.emu;
      const inv = store.invoice(ctx.path[0], 'invoice');
      if (inv.status === 'paid') {
        throw StripeError.invalid('Invoice is already paid');
      }
      const pm = str(ctx.params, 'payment_method');
      if (pm && store.paymentMethods.get(pm)?.customer !== inv.customer) {
        throw StripeError.missing('PaymentMethod', pm, 'payment_method');
      }
      const decline = attemptPayment(ctx.emu, inv, false, pm);
      if (decline) throw decline;
      return inv;
    },
  },
];
