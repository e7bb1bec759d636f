// Subscription items: a subscription holds several (typically a licensed price billed in advance
// and metered prices billed in arrears from their meter's usage). As on Stripe, all items share
// one interval and currency, a metered item has no quantity, and an items[] change replaces
// (items[i][id] + [price]/[quantity]), deletes (items[i][id] + [deleted]) or adds (no id) items.
// planChange computes a change without applying it (previews use it as it is).
//
// Metered usage follows Stripe's classic billing mode ("Manage your usage-based billing setup",
// docs.stripe.com/billing/subscriptions/usage-based/manage-billing-setup): an item bills only the
// usage since it was added, or since its price was replaced; a deleted metered item bills none of
// its usage. What ends a period early (billing_cycle_anchor=now, a new interval) bills the period
// so far at once: restartLines.
import type Stripe from 'stripe';

import { Params, bool, int, list, str } from './encoding';
import { StripeError } from './errors';
import { addInterval } from './periods';
import { interval, isMetered, periodLine, prorationLines } from './lines';
import { planOf } from './objects/prices';
import type { InvoiceLine, Store, Subscription } from './store';

export interface ItemParam {
  id?: string;
  price?: string;
  quantity?: number;
  deleted?: boolean;
}

// items[] of `p` under `key`; `prefix` names the params in errors (e.g. "subscription_details[").
export function itemsOf(p: Params, key = 'items', prefix = ''): ItemParam[] {
  const items = list(p, key) ?? [];
  const close = prefix.endsWith('[') ? ']' : '';
  return items.map((raw, i) => {
    const name = `${prefix}${key}${close}[${i}]`;
    if (typeof raw === 'string' || Array.isArray(raw)) throw StripeError.invalid(`Invalid ${name}`, name);
    const quantity = int(raw, 'quantity', `${name}[quantity]`);
    if (quantity !== undefined && quantity < 0) throw StripeError.invalid('Invalid quantity', `${name}[quantity]`);
    return {
      id: str(raw, 'id', `${name}[id]`) || undefined,
      price: str(raw, 'price', `${name}[price]`) || undefined,
      quantity,
      deleted: bool(raw, 'deleted', `${name}[deleted]`),
    };
  });
}

// The quantity an item of `price` keeps: none for a metered price (Stripe refuses one), else the
// given one or 1.
export function quantityFor(price: Stripe.Price, quantity: number | undefined, param: string): number | undefined {
  if (isMetered(price)) {
    if (quantity !== undefined) {
      throw StripeError.invalid('Quantity should not be specified where usage_type is `metered`. Remove quantity from `' +
                                param + '` and try again.', param);
    }
    return undefined;
  }
  return quantity ?? 1;
}

// Stripe bills the items of a subscription together: one interval, one currency, each price once.
export function checkTogether(prices: Stripe.Price[], param: string): void {
  if (prices.length === 0) throw StripeError.invalid('A subscription must have at least one item.', param);
  const r0 = interval(prices[0]);
  const seen = new Set<string>();
  for (const p of prices) {
    const r = interval(p);
    if (r.interval !== r0.interval || r.interval_count !== r0.interval_count) {
      throw StripeError.invalid('Currency and interval fields must match across all plans on this subscription.', param);
    }
    if (p.currency !== prices[0].currency) {
      throw StripeError.invalid('Cannot combine currencies on a single customer.', param);
    }
    if (seen.has(p.id)) {
      throw StripeError.invalid(`Cannot add multiple subscription items with the same price: ${p.id}`, param);
    }
    seen.add(p.id);
  }
}

export function newItem(
  store: Store, subId: string, price: Stripe.Price, quantity: number | undefined, start: number, end: number,
  created: number,
): Stripe.SubscriptionItem {
  const item: Stripe.SubscriptionItem = {
    id: store.id('si'),
    object: 'subscription_item',
    billing_thresholds: null,
    created,
    current_period_end: end,
    current_period_start: start,
    discounts: [],
    metadata: {},
    plan: planOf(price),
    price,
    subscription: subId,
    tax_rates: [],
  };
  if (quantity !== undefined) item.quantity = quantity;
  return item;
}

// The item the legacy single-price fields describe: the first licensed one.
export function flatItem(sub: Subscription): Stripe.SubscriptionItem {
  return sub.items.data.find((i) => !isMetered(i.price)) ?? sub.items.data[0];
}

// Refreshes the subscription's fields derived from its items.
export function syncItems(sub: Subscription): void {
  const it = flatItem(sub);
  sub.plan = it ? planOf(it.price) : null;
  sub.quantity = it?.quantity ?? null;
  if (it) sub.currency = it.price.currency;
}

// Since when a metered item bills usage: its creation, or the replacement of its price.
export function usageSince(store: Store, item: Stripe.SubscriptionItem): number {
  return store.meteredSince.get(item.id) ?? item.created;
}

export interface ItemChange {
  // The items after the change, in order (kept items first, added ones after).
  items: { id?: string; price: Stripe.Price; quantity: number | undefined }[];
  lines: InvoiceLine[]; // proration lines (and the new period's when the cycle restarts)
  resetsCycle: boolean;
  changed: boolean;
}

export function planChange(store: Store, sub: Subscription, params: ItemParam[], at: number, param: string): ItemChange {
  const out: ItemChange = {
    items: sub.items.data.map((i) => ({ id: i.id, price: i.price, quantity: i.quantity })),
    lines: [], resetsCycle: false, changed: false,
  };
  const touched = new Set<string>();
  params.forEach((it, i) => {
    const name = `${param}[${i}]`;
    if (it.id) {
      const k = out.items.findIndex((x) => x.id === it.id);
      if (k < 0 || touched.has(it.id)) throw StripeError.missing('subscription_item', it.id, `${name}[id]`);
      touched.add(it.id);
      const cur = out.items[k];
      if (it.deleted) {
        out.changed = true;
        out.items.splice(k, 1);
        // A metered item's usage goes with it (classic billing mode); a licensed one is credited.
        if (!isMetered(cur.price)) {
          out.lines.push(...prorationLines(store, sub, cur.price, cur.quantity ?? 1, cur.price, 0, at).lines);
        }
        return;
      }
      const price = it.price && it.price !== cur.price.id ? store.activePrice(it.price, `${name}[price]`) : cur.price;
      const quantity = quantityFor(price, it.quantity ?? (isMetered(price) || it.price ? undefined : cur.quantity),
                                   `${name}[quantity]`);
      if (price.id === cur.price.id && quantity === cur.quantity) return;
      out.changed = true;
      const pl = isMetered(cur.price) && isMetered(price)
        ? { lines: [], resetsCycle: false }
        : prorationLines(store, sub, cur.price, isMetered(cur.price) ? 0 : cur.quantity ?? 1, price,
                         quantity ?? 0, at);
      out.lines.push(...pl.lines);
      out.resetsCycle ||= pl.resetsCycle;
      // A replaced price is a new item on Stripe's invoices only by its price; the id stays.
      out.items[k] = { id: cur.id, price, quantity };
      return;
    }
    if (it.deleted) throw StripeError.invalid(`Missing required param: ${name}[id].`, `${name}[id]`, 'parameter_missing');
    if (!it.price) throw StripeError.invalid(`Missing required param: ${name}[price].`, `${name}[price]`, 'parameter_missing');
    const price = store.activePrice(it.price, `${name}[price]`);
    const quantity = quantityFor(price, it.quantity, `${name}[quantity]`);
    out.changed = true;
    if (!isMetered(price)) {
      const pl = prorationLines(store, sub, price, 0, price, quantity ?? 1, at);
      out.lines.push(...pl.lines);
    }
    out.items.push({ price, quantity });
  });
  if (out.changed) {
    checkTogether(out.items.map((x) => x.price), param);
    const before = interval(flatItem(sub).price);
    const after = interval(out.items.find((x) => !isMetered(x.price))?.price ?? out.items[0].price);
    if (before.interval !== after.interval || before.interval_count !== after.interval_count) out.resetsCycle = true;
  }
  return out;
}

// Applies a planned change: items replaced in place (same id), removed, added.
export function applyChange(store: Store, sub: Subscription, change: ItemChange, at: number): void {
  const byId = new Map(sub.items.data.map((i) => [i.id, i]));
  sub.items.data = change.items.map((x) => {
    const existing = x.id ? byId.get(x.id) : undefined;
    if (!existing) {
      return newItem(store, sub.id, x.price, x.quantity, sub.current_period_start, sub.current_period_end, at);
    }
    // A metered item given another price bills the usage from here on, at that price.
    if (isMetered(x.price) && existing.price.id !== x.price.id) store.meteredSince.set(existing.id, at);
    existing.price = x.price;
    existing.plan = planOf(x.price);
    if (x.quantity === undefined) delete existing.quantity;
    else existing.quantity = x.quantity;
    return existing;
  });
  syncItems(sub);
}

// The lines of a period ended early at `at` (billing_cycle_anchor=now, or a new interval), with
// `before` the items the subscription had in it and `after` those it has from `at` on: each
// licensed item of before credited for its unused time (not with proration_behavior none), each
// licensed item of after billed for the new period from `at`, and each metered item of before
// (also one the same update deletes or gives another price) billed for its usage so far.
export function restartLines(
  store: Store, sub: Subscription, before: Stripe.SubscriptionItem[],
  after: { price: Stripe.Price; quantity: number | undefined }[], at: number, behavior: string,
): InvoiceLine[] {
  const lines: InvoiceLine[] = [];
  if (behavior !== 'none') {
    for (const it of before) {
      if (!isMetered(it.price)) lines.push(...prorationLines(store, sub, it.price, it.quantity ?? 1, it.price, 0, at).lines);
    }
  }
  for (const it of after) {
    if (isMetered(it.price)) continue;
    const r = interval(it.price);
    lines.push(periodLine(store, sub, it.price, it.quantity ?? 1, at, addInterval(at, r.interval, r.interval_count)));
  }
  for (const it of before) {
    if (!isMetered(it.price)) continue;
    const since = Math.max(sub.current_period_start, usageSince(store, it));
    lines.push(periodLine(store, sub, it.price, 0, since, at, [since, at]));
  }
  return lines;
}

// The lines of a subscription's final invoice when it ends at `at` (Stripe, "Cancel a
// subscription": `invoice_now` "generates a final invoice that invoices for any un-invoiced metered
// usage and new/pending proration invoice items"; `prorate` credits the unused time; a
// subscription canceled at its period's end gets "a final invoice" for the period's metered usage,
// in the earlier wording of the "Cancel subscriptions" guide):
// its pending proration items (taken off the pending list), with `prorate` each licensed item
// credited for [at, period end), and each metered item's usage so far (from the period's start, or
// the item's creation or price change, to `at`). None during a trial.
export function finalLines(store: Store, sub: Subscription, at: number, prorate: boolean): InvoiceLine[] {
  const lines = store.pendingItems.filter((x) => x.subscription === sub.id).map((x) => x.line);
  store.pendingItems = store.pendingItems.filter((x) => x.subscription !== sub.id);
  if (sub.status === 'trialing') return lines;
  for (const it of sub.items.data) {
    if (isMetered(it.price)) {
      const since = Math.max(sub.current_period_start, usageSince(store, it));
      lines.push(periodLine(store, sub, it.price, 0, since, at, [since, at]));
    } else if (prorate) {
      lines.push(...prorationLines(store, sub, it.price, it.quantity ?? 1, it.price, 0, at).lines);
    }
  }
  return lines;
}
