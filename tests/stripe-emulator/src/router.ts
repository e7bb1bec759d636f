// The route table's types: each objects/* module exports its routes; server.ts matches them.
import type Stripe from 'stripe';

import type { Params } from './encoding';
import type { Store } from './store';
import type { Webhooks } from './webhooks';

export interface Emulator {
  store: Store;
  webhooks: Webhooks;
  stripe: Stripe;
  baseUrl: string; // http://127.0.0.1:<port>
}

export interface Ctx {
  emu: Emulator;
  params: Params; // body (POST) or query (GET, DELETE), decoded
  path: string[]; // the route's captures, in order
  requestId: string;
  idempotencyKey: string | null;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  path: string; // '/v1/customers/:id'
  handler: (ctx: Ctx) => unknown;
}
