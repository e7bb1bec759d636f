// Invoices: list, retrieve, lines, pay; and the preview of the next invoice for a subscription
// change, in both shapes: GET /v1/invoices/upcoming (subscription_items, subscription_proration_date)
// and POST /v1/invoices/create_preview (subscription_details[items], [proration_date]), which
// the pinned SDK uses. The preview holds the proration lines of the change (billing.ts) plus
// pending items plus the next period at the new price; nothing is stored or charged.
import { Params, hash, int, list, oneOf, str } from '../encoding';
import { StripeError } from '../errors';
import { attemptPayment, draftInvoice, interval, isMetered, periodLine, prorationLines } from '../billing';
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
  const current = sub.items.data[0];
  let price = current.price;
  let qty = current.quantity ?? 1;
  const items = list(details, itemsKey) ?? [];
  if (items.length > 1) throw StripeError.invalid('The emulator supports one subscription item.', `${prefix}${itemsKey}`);
  const it = items[0];
  if (it !== undefined) {
    if (typeof it !== 'object' || Array.isArray(it)) throw StripeError.invalid('Invalid item', `${prefix}${itemsKey}[0]`);
    const id = str(it, 'id', `${prefix}${itemsKey}[0][id]`);
    if (id && id !== current.id) throw StripeError.missing('subscription_item', id, `${prefix}${itemsKey}[0][id]`);
    const pid = str(it, 'price', `${prefix}${itemsKey}[0][price]`);
    if (pid) price = store.price(pid, `${prefix}${itemsKey}[0][price]`);
    qty = int(it, 'quantity', `${prefix}${itemsKey}[0][quantity]`) ?? qty;
  }
  const lines: InvoiceLine[] = store.pendingItems.filter((x) => x.subscription === sub.id).map((x) => ({ ...x.line }));
  let nextStart = sub.current_period_end;
  let changed = false;
  if (price.id !== current.price.id || qty !== current.quantity) {
    changed = true;
    const { lines: pl, resetsCycle } = prorationLines(store, sub, current.price, current.quantity ?? 1, price, qty, at);
    if (behavior !== 'none' || resetsCycle) lines.push(...pl);
    if (resetsCycle) {
      // The new cycle starts now and its first period is already among the lines.
      const r = interval(price);
      nextStart = addInterval(at, r.interval, r.interval_count);
    }
  }
  if (isMetered(price)) {
    // What the usage so far would cost at the period's end.
    lines.push(periodLine(store, sub, price, 0, sub.current_period_start, sub.current_period_end,
                          [sub.current_period_start, now + 1]));
  } else if (!changed || !lines.some((l) => !l.proration && l.period.start === at)) {
    const r = interval(price);
    lines.push(periodLine(store, sub, price, qty, nextStart, addInterval(nextStart, r.interval, r.interval_count)));
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
    path: '/v1/invoices/:id/pay',
    handler: (ctx) => {
      const { store } = ctx.emu;
      const inv = store.invoice(ctx.path[0], 'invoice');
      if (inv.status === 'paid') {
        throw StripeError.invalid('Invoice is already paid', undefined, 'invoice_payment_intent_requires_action');
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
