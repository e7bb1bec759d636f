// The emulator's whole state, in memory: Stripe's objects by kind (typed with the SDK's own
// definitions), ids, time, list pagination and `expand`. Reset by /_emulator/reset.
import { randomBytes } from 'node:crypto';
import type Stripe from 'stripe';

import { Params, int, str } from './encoding';
import { StripeError } from './errors';

// Fields that Stripe moved or removed in newer API versions but that clients pinned to an older
// Stripe-Version still read; the emulator sends both shapes (see README, "API versions").
export interface LegacySubscriptionFields {
  current_period_start: number;
  current_period_end: number;
  plan: Stripe.Plan | null;
  quantity: number | null;
}
export type Subscription = Stripe.Subscription & LegacySubscriptionFields;
export interface LegacyInvoiceFields {
  subscription: string | null;
  paid: boolean;
  tax: number | null;
  total_tax_amounts: never[];
  charge: string | null;
  payment_intent: string | null;
  subscription_proration_date?: number;
}
export type Invoice = Stripe.Invoice & LegacyInvoiceFields;
export interface LegacyLineFields {
  price: Stripe.Price | null;
  plan: Stripe.Plan | null;
  proration: boolean;
  type: 'subscription' | 'invoiceitem';
  tax_amounts: never[];
  unit_amount_excluding_tax: string | null;
}
export type InvoiceLine = Stripe.InvoiceLineItem & LegacyLineFields;
export type CheckoutSession = Pick<
  Stripe.Checkout.Session,
  | 'id' | 'object' | 'amount_subtotal' | 'amount_total' | 'cancel_url' | 'client_reference_id'
  | 'created' | 'currency' | 'customer' | 'customer_email' | 'expires_at' | 'invoice' | 'livemode'
  | 'metadata' | 'mode' | 'payment_method_types' | 'payment_status' | 'setup_intent' | 'status'
  | 'subscription' | 'success_url' | 'url'
>;
export interface ListEnvelope<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  url: string;
}

// A pending invoice item: a proration line waiting for the customer's next invoice.
export interface PendingItem {
  customer: string;
  subscription: string;
  line: InvoiceLine;
}

// A meter event as counted: which meter, whose, how much, when.
export interface MeterEventRecord {
  meter: string;
  customer: string;
  value: number;
  timestamp: number;
  identifier: string;
  event: Stripe.Billing.MeterEvent;
}

// A metered line of a draft renewal invoice: its price, period and usage window.
export interface DraftUsageLine {
  index: number;
  price: Stripe.Price;
  period: [number, number];
  window: [number, number];
}
export interface DraftRenewal {
  subscription: string;
  wasTrial: boolean;
  metered: DraftUsageLine[];
}

export class Store {
  customers = new Map<string, Stripe.Customer>();
  products = new Map<string, Stripe.Product>();
  prices = new Map<string, Stripe.Price>();
  subscriptions = new Map<string, Subscription>();
  invoices = new Map<string, Invoice>();
  paymentMethods = new Map<string, Stripe.PaymentMethod>();
  checkoutSessions = new Map<string, CheckoutSession>();
  portalSessions = new Map<string, Stripe.BillingPortal.Session>();
  testClocks = new Map<string, Stripe.TestHelpers.TestClock>();
  events = new Map<string, Stripe.Event>();
  webhookEndpoints = new Map<string, Stripe.WebhookEndpoint>();
  pendingItems: PendingItem[] = [];
  meters = new Map<string, Stripe.Billing.Meter>();
  meterEvents: MeterEventRecord[] = [];
  meteredSince = new Map<string, number>(); // metered item id -> when its price was last replaced
  // Renewal invoices still drafts (the finalization grace period): what their metered lines bill,
  // brought up to date when they are finalized (clock.ts).
  draftRenewals = new Map<string, DraftRenewal>();
  // Emulator-only state.
  failingPaymentMethods = new Set<string>(); // pm ids whose charges are declined
  failNextCharges = new Map<string, number>(); // customer id -> charges still to decline
  trialWillEndSent = new Set<string>(); // subscription ids told their trial ends in 3 days
  defaultClockOffset = 0; // seconds added to the wall clock for objects without a test clock
  invoiceCounter = 0;

  id(prefix: string): string {
    return `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
  }

  // Seconds since the epoch as seen by `clock` (a test clock id) or the default clock.
  now(clock?: string | null): number {
    if (clock) {
      const c = this.testClocks.get(clock);
      if (c) return c.frozen_time;
    }
    return Math.floor(Date.now() / 1000) + this.defaultClockOffset;
  }
  clockOf(customer: string | null | undefined): string | null {
    if (!customer) return null;
    const c = this.customers.get(customer);
    const clock = c?.test_clock;
    return typeof clock === 'string' ? clock : (clock?.id ?? null);
  }
  nowFor(customer: string | null | undefined): number {
    return this.now(this.clockOf(customer));
  }

  customer(id: string, param = 'customer'): Stripe.Customer {
    const c = this.customers.get(id);
    if (!c) throw StripeError.missing('customer', id, param);
    return c;
  }
  price(id: string, param = 'price'): Stripe.Price {
    const p = this.prices.get(id);
    if (!p) throw StripeError.missing('price', id, param);
    return p;
  }
  // A price for a new purchase: Stripe refuses an archived one there (existing items keep theirs).
  activePrice(id: string, param = 'price'): Stripe.Price {
    const p = this.price(id, param);
    if (!p.active) throw StripeError.invalid('The price specified is inactive. This field only accepts active prices.', param);
    return p;
  }
  subscription(id: string, param = 'subscription'): Subscription {
    const s = this.subscriptions.get(id);
    if (!s) throw StripeError.missing('subscription', id, param);
    return s;
  }
  invoice(id: string, param = 'invoice'): Invoice {
    const i = this.invoices.get(id);
    if (!i) throw StripeError.missing('invoice', id, param);
    return i;
  }

  // Any object by id, for `expand`.
  lookup(id: string): object | undefined {
    const maps: Map<string, object>[] = [
      this.customers, this.products, this.prices, this.subscriptions, this.invoices,
      this.paymentMethods, this.checkoutSessions, this.portalSessions, this.testClocks,
      this.events, this.webhookEndpoints, this.meters,
    ];
    for (const m of maps) {
      const o = m.get(id);
      if (o) return o;
    }
    return undefined;
  }
}

// List sizes. Stripe embeds the first 10 lines of an invoice in the invoice object (has_more
// tells whether GET /v1/invoices/{id}/lines has more) and serves at most 100 items a page. A test
// may make both smaller (POST /_emulator/lists) to see a client page through a long list without
// making hundreds of objects; a larger `limit` is then served as the smaller page (the client
// follows has_more as it must anyway). /_emulator/reset restores Stripe's sizes.
export const lists = { embeddedInvoiceLines: 10, maxPage: 100 };

// What the emulator sends of a stored object (API answers and webhook events): a copy in which
// every invoice carries only the first page of its lines, as Stripe's do.
export function asSent(value: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(value ?? null)) as unknown;
  firstPageOfLines(copy);
  return copy;
}
function firstPageOfLines(node: unknown): void {
  if (!node || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const e of node) firstPageOfLines(e);
    return;
  }
  const rec = node as Record<string, unknown>;
  const lines = rec.lines as { object?: unknown; data?: unknown; has_more?: boolean } | undefined;
  if (rec.object === 'invoice' && lines && lines.object === 'list' && Array.isArray(lines.data) &&
      lines.data.length > lists.embeddedInvoiceLines) {
    lines.data = lines.data.slice(0, lists.embeddedInvoiceLines);
    lines.has_more = true;
  }
  for (const v of Object.values(rec)) firstPageOfLines(v);
}

// Stripe's list envelope over `items` (newest first), with limit / starting_after /
// ending_before as Stripe pages them.
export function paginate<T extends { id: string }>(
  items: T[],
  q: Params,
  url: string,
): ListEnvelope<T> {
  let limit = int(q, 'limit') ?? 10;
  if (limit < 1 || limit > 100) {
    throw StripeError.invalid('Invalid integer: limit must be between 1 and 100', 'limit');
  }
  limit = Math.min(limit, lists.maxPage);
  const after = str(q, 'starting_after');
  const before = str(q, 'ending_before');
  if (after && before) {
    throw StripeError.invalid(
      'You may only specify one of these parameters: ending_before, starting_after.',
      'ending_before', 'parameters_exclusive');
  }
  if (after !== undefined || before !== undefined) {
    const cursor = (after ?? before) as string;
    const at = items.findIndex((i) => i.id === cursor);
    if (at < 0) throw StripeError.missing('object', cursor, after ? 'starting_after' : 'ending_before');
    if (after) {
      const rest = items.slice(at + 1);
      return { object: 'list', data: rest.slice(0, limit), has_more: rest.length > limit, url };
    }
    const head = items.slice(0, at);
    const data = head.slice(Math.max(0, head.length - limit));
    return { object: 'list', data, has_more: head.length > limit, url };
  }
  return { object: 'list', data: items.slice(0, limit), has_more: items.length > limit, url };
}

export function newestFirst<T>(m: Map<string, T>): T[] {
  return Array.from(m.values()).reverse();
}

// `expand[]=a.b` on a response: replaces id strings with (copies of) the objects; a `data.`
// prefix expands inside each element of a list.
export function expand(store: Store, value: unknown, paths: string[]): unknown {
  const copy = JSON.parse(JSON.stringify(value)) as unknown;
  for (const path of paths) expandPath(store, copy, path.split('.'));
  return copy;
}
function expandPath(store: Store, node: unknown, parts: string[]): void {
  if (!node || typeof node !== 'object' || parts.length === 0) return;
  const rec = node as Record<string, unknown>;
  const [head, ...rest] = parts;
  if (head === 'data' && Array.isArray(rec.data)) {
    for (const e of rec.data) expandPath(store, e, rest);
    return;
  }
  let v = rec[head];
  if (typeof v === 'string') {
    const o = store.lookup(v);
    if (o) rec[head] = v = JSON.parse(JSON.stringify(o)) as unknown;
  }
  if (rest.length) expandPath(store, v, rest);
}
