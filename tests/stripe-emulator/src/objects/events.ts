// Events (retrieve, list) and webhook endpoints (create, list, delete; the secret is returned on
// create, as Stripe does). The --webhook-url flag creates one endpoint for every event type.
import type Stripe from 'stripe';

import { allowOnly, applyMetadata, list, reqStr, str } from '../encoding';
import { StripeError } from '../errors';
import type { Emulator, Route } from '../router';
import { newestFirst, paginate } from '../store';
import { randomBytes } from 'node:crypto';

export function addEndpoint(emu: Emulator, url: string, secret: string | undefined, events: string[]): Stripe.WebhookEndpoint {
  const e: Stripe.WebhookEndpoint = {
    id: emu.store.id('we'),
    object: 'webhook_endpoint',
    api_version: null,
    application: null,
    created: emu.store.now(),
    description: null,
    enabled_events: events,
    livemode: false,
    metadata: {},
    secret: secret ?? `whsec_${randomBytes(24).toString('hex')}`,
    status: 'enabled',
    url,
  };
  emu.store.webhookEndpoints.set(e.id, e);
  return e;
}

export const routes: Route[] = [
  {
    method: 'GET',
    path: '/v1/events/:id',
    handler: (ctx) => {
      const e = ctx.emu.store.events.get(ctx.path[0]);
      if (!e) throw StripeError.missing('event', ctx.path[0], 'id');
      return e;
    },
  },
  {
    method: 'GET',
    path: '/v1/events',
    handler: (ctx) => {
      const type = str(ctx.params, 'type');
      const types = list(ctx.params, 'types')?.map(String);
      const all = newestFirst(ctx.emu.store.events).filter(
        (e) => (!type || e.type === type || (type.endsWith('*') && e.type.startsWith(type.slice(0, -1)))) &&
               (!types || types.includes(e.type)));
      return paginate(all, ctx.params, '/v1/events');
    },
  },
  {
    method: 'POST',
    path: '/v1/webhook_endpoints',
    handler: (ctx) => {
      allowOnly(ctx.params, ['url', 'enabled_events', 'description', 'metadata', 'api_version']);
      const events = list(ctx.params, 'enabled_events')?.map(String);
      if (!events?.length) {
        throw StripeError.invalid('Missing required param: enabled_events.', 'enabled_events', 'parameter_missing');
      }
      const e = addEndpoint(ctx.emu, reqStr(ctx.params, 'url'), undefined, events);
      e.description = str(ctx.params, 'description') ?? null;
      e.metadata = applyMetadata({}, ctx.params);
      return e;
    },
  },
  {
    method: 'GET',
    path: '/v1/webhook_endpoints',
    handler: (ctx) => paginate(
      newestFirst(ctx.emu.store.webhookEndpoints).map((e) => ({ ...e, secret: undefined })),
      ctx.params, '/v1/webhook_endpoints'),
  },
  {
    method: 'DELETE',
    path: '/v1/webhook_endpoints/:id',
    handler: (ctx): Stripe.DeletedWebhookEndpoint => {
      if (!ctx.emu.store.webhookEndpoints.delete(ctx.path[0])) {
        throw StripeError.missing('webhook_endpoint', ctx.path[0], 'id');
      }
      return { id: ctx.path[0], object: 'webhook_endpoint', deleted: true };
    },
  },
];
