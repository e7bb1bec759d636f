// Prices (one-time and recurring: day/week/month/year, licensed or metered), and the legacy Plan
// view of a recurring price that subscription items still carry.
import type Stripe from 'stripe';

import { Params, allowOnly, applyMetadata, bool, hash, int, list, oneOf, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Route } from '../router';
import { newestFirst, paginate } from '../store';

const kIntervals = ['day', 'week', 'month', 'year'] as const;

export function planOf(price: Stripe.Price): Stripe.Plan {
  const r = price.recurring;
  return {
    id: price.id,
    object: 'plan',
    active: price.active,
    amount: price.unit_amount,
    amount_decimal: null,
    billing_scheme: 'per_unit',
    created: price.created,
    currency: price.currency,
    interval: r?.interval ?? 'month',
    interval_count: r?.interval_count ?? 1,
    livemode: false,
    metadata: price.metadata,
    meter: r?.meter ?? null,
    nickname: price.nickname,
    product: price.product,
    tiers_mode: null,
    transform_usage: null,
    trial_period_days: null,
    usage_type: r?.usage_type ?? 'licensed',
  };
}

function recurringOf(p: Params): Stripe.Price.Recurring | null {
  const r = hash(p, 'recurring');
  if (!r) return null;
  const interval = oneOf(r, 'interval', kIntervals, 'recurring[interval]');
  if (!interval) {
    throw StripeError.invalid('Missing required param: recurring[interval].', 'recurring[interval]',
                              'parameter_missing');
  }
  const usage = oneOf(r, 'usage_type', ['licensed', 'metered'] as const, 'recurring[usage_type]');
  const meter = str(r, 'meter', 'recurring[meter]');
  if (usage === 'metered' && !meter) {
    throw StripeError.invalid('Missing required param: recurring[meter] (a metered price needs a meter).', 'recurring[meter]', 'parameter_missing');
  }
  return {
    interval,
    interval_count: int(r, 'interval_count', 'recurring[interval_count]') ?? 1,
    meter: str(r, 'meter', 'recurring[meter]') ?? null,
    trial_period_days: null,
    usage_type: usage ?? 'licensed',
  };
}

// A decimal amount in minor units ("0.1": a tenth of a cent), as Stripe's *_decimal fields.
// On the wire a decimal is a string; the SDK parses it into its own Decimal class, which is
// what its types name, so the string is stored under that type.
function decimal(p: Params, key: string, name = key): Stripe.Decimal | undefined {
  const v = str(p, key, name);
  if (v === undefined) return undefined;
  if (!/^\d+(\.\d{1,12})?$/.test(v)) throw StripeError.invalid(`Invalid decimal: ${v}`, name);
  return wire(v);
}
function wire(v: string): Stripe.Decimal {
  return v as unknown as Stripe.Decimal;
}

// billing_scheme=tiered: `tiers[i][up_to]` (an integer, or `inf` for the last),
// `tiers[i][unit_amount]` or `tiers[i][unit_amount_decimal]`, `tiers[i][flat_amount]`.
function tiersOf(p: Params): Stripe.Price.Tier[] {
  const raw = list(p, 'tiers');
  if (!raw || raw.length === 0) {
    throw StripeError.invalid('Missing required param: tiers (a tiered price needs tiers).', 'tiers', 'parameter_missing');
  }
  let previous = 0;
  return raw.map((t, i) => {
    const name = `tiers[${i}]`;
    if (typeof t === 'string' || Array.isArray(t)) throw StripeError.invalid(`Invalid object: ${name}`, name);
    allowOnly(t, ['up_to', 'unit_amount', 'unit_amount_decimal', 'flat_amount']);
    const last = i === raw.length - 1;
    const upTo = str(t, 'up_to', `${name}[up_to]`);
    if (last !== (upTo === 'inf')) {
      throw StripeError.invalid('Only the last tier may have up_to=inf, and it must.', `${name}[up_to]`);
    }
    const bound = upTo === 'inf' ? null : int(t, 'up_to', `${name}[up_to]`)!;
    if (bound !== null && bound <= previous) {
      throw StripeError.invalid('Tiers must have ascending up_to values.', `${name}[up_to]`);
    }
    if (bound !== null) previous = bound;
    const unit = int(t, 'unit_amount', `${name}[unit_amount]`);
    const unitDecimal = decimal(t, 'unit_amount_decimal', `${name}[unit_amount_decimal]`);
    const flat = int(t, 'flat_amount', `${name}[flat_amount]`);
    return {
      flat_amount: flat ?? null,
      flat_amount_decimal: flat === undefined ? null : wire(String(flat)),
      unit_amount: unit ?? null,
      unit_amount_decimal: unitDecimal ?? (unit === undefined ? null : wire(String(unit))),
      up_to: bound,
    };
  });
}

function create(ctx: Ctx): Stripe.Price {
  const { store, webhooks } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['currency', 'unit_amount', 'unit_amount_decimal', 'billing_scheme', 'tiers',
                'tiers_mode', 'product', 'product_data', 'recurring', 'lookup_key',
                'transfer_lookup_key', 'metadata', 'nickname', 'active', 'tax_behavior']);
  const currency = reqStr(p, 'currency').toLowerCase();
  if (!/^[a-z]{3}$/.test(currency)) throw StripeError.invalid(`Invalid currency: ${currency}`, 'currency');
  const scheme = oneOf(p, 'billing_scheme', ['per_unit', 'tiered'] as const) ?? 'per_unit';
  const tiers = scheme === 'tiered' ? tiersOf(p) : undefined;
  const tiersMode = scheme === 'tiered' ? oneOf(p, 'tiers_mode', ['graduated', 'volume'] as const) : undefined;
  if (scheme === 'tiered' && !tiersMode) {
    throw StripeError.invalid('Missing required param: tiers_mode.', 'tiers_mode', 'parameter_missing');
  }
  const unitDecimal = decimal(p, 'unit_amount_decimal');
  const unitAmount = int(p, 'unit_amount') ?? (unitDecimal !== undefined && Number.isInteger(Number(String(unitDecimal))) ? Number(String(unitDecimal)) : undefined);
  if (unitAmount === undefined && unitDecimal === undefined && scheme === 'per_unit') {
    throw StripeError.invalid('Missing required param: unit_amount.', 'unit_amount', 'parameter_missing');
  }
  if (unitAmount !== undefined && unitAmount < 0) throw StripeError.invalid('Invalid unit_amount: must be >= 0', 'unit_amount');
  let product = str(p, 'product');
  const pd = hash(p, 'product_data');
  if (!product && pd) {
    const prod = ctx.emu.store.products;
    const id = store.id('prod');
    const now = store.now();
    prod.set(id, {
      id, object: 'product', active: true, created: now, default_price: null,
      description: null, images: [], livemode: false, marketing_features: [],
      metadata: applyMetadata({}, pd), name: reqStr(pd, 'name', 'product_data[name]'),
      package_dimensions: null, shippable: null, type: 'service', updated: now, url: null,
    });
    product = id;
  }
  if (!product) throw StripeError.invalid('Missing required param: product.', 'product', 'parameter_missing');
  if (!store.products.has(product)) throw StripeError.missing('product', product, 'product');
  const lookupKey = str(p, 'lookup_key') || null;
  if (lookupKey) {
    const holder = Array.from(store.prices.values()).find((x) => x.lookup_key === lookupKey);
    if (holder) {
      if (!bool(p, 'transfer_lookup_key')) {
        throw StripeError.invalid(
          `A price (\`${holder.id}\`) already uses that lookup key.`, 'lookup_key');
      }
      holder.lookup_key = null;
    }
  }
  const recurring = recurringOf(p);
  if (recurring?.meter && !store.meters.has(recurring.meter)) {
    throw StripeError.missing('billing.meter', recurring.meter, 'recurring[meter]');
  }
  const price: Stripe.Price = {
    id: store.id('price'),
    object: 'price',
    active: bool(p, 'active') ?? true,
    billing_scheme: scheme,
    created: store.now(),
    currency,
    custom_unit_amount: null,
    livemode: false,
    lookup_key: lookupKey,
    metadata: applyMetadata({}, p),
    nickname: str(p, 'nickname') ?? null,
    product,
    recurring,
    tax_behavior: oneOf(p, 'tax_behavior', ['exclusive', 'inclusive', 'unspecified'] as const) ?? 'unspecified',
    tiers_mode: tiersMode ?? null,
    transform_quantity: null,
    type: recurring ? 'recurring' : 'one_time',
    unit_amount: scheme === 'tiered' ? null : (unitAmount ?? null),
    unit_amount_decimal: scheme === 'tiered' ? null : (unitDecimal ?? wire(String(unitAmount))),
    ...(tiers ? { tiers } : {}),
  };
  store.prices.set(price.id, price);
  webhooks.emit('price.created', price);
  return price;
}

function update(ctx: Ctx): Stripe.Price {
  const { store } = ctx.emu;
  const price = store.price(ctx.path[0], 'id');
  const p = ctx.params;
  allowOnly(p, ['active', 'metadata', 'lookup_key', 'nickname', 'transfer_lookup_key']);
  const active = bool(p, 'active');
  if (active !== undefined) price.active = active;
  const nickname = str(p, 'nickname');
  if (nickname !== undefined) price.nickname = nickname || null;
  const lookupKey = str(p, 'lookup_key');
  if (lookupKey !== undefined) {
    const holder = Array.from(store.prices.values()).find(
      (x) => lookupKey && x.lookup_key === lookupKey && x.id !== price.id);
    if (holder && !bool(p, 'transfer_lookup_key')) {
      throw StripeError.invalid(`A price (\`${holder.id}\`) already uses that lookup key.`, 'lookup_key');
    }
    if (holder) holder.lookup_key = null;
    price.lookup_key = lookupKey || null;
  }
  price.metadata = applyMetadata(price.metadata, p);
  ctx.emu.webhooks.emit('price.updated', price);
  return price;
}

function listPrices(ctx: Ctx) {
  const q = ctx.params;
  const product = str(q, 'product');
  const active = bool(q, 'active');
  const type = str(q, 'type');
  const keys = list(q, 'lookup_keys')?.map(String);
  const all = newestFirst(ctx.emu.store.prices).filter(
    (p) =>
      (!product || p.product === product) &&
      (active === undefined || p.active === active) &&
      (!type || p.type === type) &&
      (!keys || (p.lookup_key !== null && keys.includes(p.lookup_key))));
  return paginate(all, q, '/v1/prices');
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/prices', handler: create },
  { method: 'GET', path: '/v1/prices/:id', handler: (ctx) => ctx.emu.store.price(ctx.path[0], 'id') },
  { method: 'POST', path: '/v1/prices/:id', handler: update },
  { method: 'GET', path: '/v1/prices', handler: listPrices },
];
