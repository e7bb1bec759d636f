// Invoice lines: a period of a price (licensed in advance, metered in arrears from the meter's
// usage) and the proration lines of a price change.
//
// Proration (deterministic, by seconds): changing the price at time t within the period [s, e)
// credits  -round(old_amount * qty_old * (e - t) / (e - s))  and charges
// round(new_amount * qty_new * (e - t) / (e - s)). When the interval changes (month <-> year) the
// billing cycle restarts at t: the credit as above plus the full new price, invoiced at once.
import type Stripe from 'stripe';

import { StripeError } from './errors';
import { addInterval } from './periods';
import { planOf } from './objects/prices';
import type { InvoiceLine, Store, Subscription } from './store';

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

// What `used` units of a metered price cost, in minor units: per unit (unit_amount_decimal), or
// by tiers (graduated: each tier prices the units within it; volume: the tier of the total prices
// every unit), rounded once at the end.
export function meteredAmount(price: Stripe.Price, used: number): number {
  // A decimal is stored as its wire string (see prices.ts).
  const each = (t: { unit_amount: number | null; unit_amount_decimal: Stripe.Decimal | null }) =>
    Number(t.unit_amount_decimal !== null ? String(t.unit_amount_decimal) : (t.unit_amount ?? 0));
  if (price.billing_scheme !== 'tiered' || !price.tiers) return Math.round(used * each(price));
  let total = 0;
  let from = 0;
  for (const tier of price.tiers) {
    const to = tier.up_to ?? Infinity;
    if (price.tiers_mode === 'volume') {
      if (used <= to) return Math.round(used * each(tier) + (tier.flat_amount ?? 0));
      continue;
    }
    const n = Math.min(used, to) - from;
    if (n > 0) total += n * each(tier) + (tier.flat_amount ?? 0);
    from = to;
  }
  return Math.round(total);
}

// The line of a full period of `price`. A metered price is billed in arrears: its line is the
// usage in `usageWindow` (none by default) times the unit amount.
export function periodLine(store: Store, sub: Subscription, price: Stripe.Price, quantity: number,
                           start: number, end: number, usageWindow?: [number, number]): InvoiceLine {
  if (isMetered(price)) {
    const used = usageWindow ? usage(store, price, sub.customer as string, usageWindow[0], usageWindow[1]) : 0;
    return newLine(store, {
      price, quantity: used, amount: meteredAmount(price, used), start, end,
      description: price.billing_scheme === 'tiered'
        ? `${used} × ${productName(store, price)} (metered, tiered)`
        : `${used} × ${productName(store, price)} (metered, at ${money(price.unit_amount ?? 0, price.currency)} each)`,
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

