// Products: create / retrieve / update / list / delete.
import type Stripe from 'stripe';

import { allowOnly, applyMetadata, bool, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Ctx, Route } from '../router';
import { newestFirst, paginate } from '../store';

function product(ctx: Ctx): Stripe.Product {
  const p = ctx.emu.store.products.get(ctx.path[0]);
  if (!p) throw StripeError.missing('product', ctx.path[0], 'id');
  return p;
}

function create(ctx: Ctx): Stripe.Product {
  const { store, webhooks } = ctx.emu;
  const p = ctx.params;
  allowOnly(p, ['id', 'name', 'description', 'metadata', 'active', 'unit_label', 'url']);
  const id = str(p, 'id') || store.id('prod');
  if (store.products.has(id)) {
    throw StripeError.invalid(`Product already exists.`, 'id', 'resource_already_exists');
  }
  const now = store.now();
  const prod: Stripe.Product = {
    id,
    object: 'product',
    active: bool(p, 'active') ?? true,
    created: now,
    default_price: null,
    description: str(p, 'description') ?? null,
    images: [],
    livemode: false,
    marketing_features: [],
    metadata: applyMetadata({}, p),
    name: reqStr(p, 'name'),
    package_dimensions: null,
    shippable: null,
    statement_descriptor: null,
    tax_code: null,
    type: 'service',
    unit_label: str(p, 'unit_label') ?? null,
    updated: now,
    url: str(p, 'url') ?? null,
  };
  store.products.set(id, prod);
  webhooks.emit('product.created', prod);
  return prod;
}

function update(ctx: Ctx): Stripe.Product {
  const prod = product(ctx);
  const p = ctx.params;
  allowOnly(p, ['name', 'description', 'metadata', 'active', 'unit_label', 'url', 'default_price']);
  const name = str(p, 'name');
  if (name !== undefined) prod.name = name;
  const description = str(p, 'description');
  if (description !== undefined) prod.description = description || null;
  const active = bool(p, 'active');
  if (active !== undefined) prod.active = active;
  const dp = str(p, 'default_price');
  if (dp !== undefined) prod.default_price = dp ? ctx.emu.store.price(dp, 'default_price').id : null;
  prod.metadata = applyMetadata(prod.metadata, p);
  prod.updated = ctx.emu.store.now();
  ctx.emu.webhooks.emit('product.updated', prod);
  return prod;
}

export const routes: Route[] = [
  { method: 'POST', path: '/v1/products', handler: create },
  { method: 'GET', path: '/v1/products/:id', handler: product },
  { method: 'POST', path: '/v1/products/:id', handler: update },
  {
    method: 'DELETE',
    path: '/v1/products/:id',
    handler: (ctx): Stripe.DeletedProduct => {
      const prod = product(ctx);
      ctx.emu.store.products.delete(prod.id);
      return { id: prod.id, object: 'product', deleted: true };
    },
  },
  {
    method: 'GET',
    path: '/v1/products',
    handler: (ctx) => {
      const active = bool(ctx.params, 'active');
      const all = newestFirst(ctx.emu.store.products).filter(
        (p) => active === undefined || p.active === active);
      return paginate(all, ctx.params, '/v1/products');
    },
  },
];
