// Wires the store, the webhooks, the route tables and the control API onto an HTTP server.
// Used by main.ts and by the emulator's own tests (which start it in-process on port 0).
import type http from 'node:http';

import Stripe from 'stripe';

import { control } from './control';
import { routes as checkout, resetCheckout } from './objects/checkout';
import { routes as customers } from './objects/customers';
import { routes as events } from './objects/events';
import { routes as invoiceItems } from './objects/invoice_items';
import { routes as invoices } from './objects/invoices';
import { routes as meters } from './objects/meters';
import { routes as paymentMethods } from './objects/payment_methods';
import { routes as portal } from './objects/portal';
import { routes as prices } from './objects/prices';
import { routes as products } from './objects/products';
import { routes as subscriptions } from './objects/subscriptions';
import { routes as testClocks } from './objects/test_clocks';
import { addEndpoint } from './objects/events';
import { pages } from './pages';
import type { Emulator } from './router';
import { ApiServer } from './server';
import { Store, lists } from './store';
import { Webhooks } from './webhooks';
import { dunning } from './payments';

// The API version the emulator speaks by default: the pinned SDK's.
export const kApiVersion: string = Stripe.API_VERSION;

export interface Options {
  webhookUrl?: string;
  webhookSecret?: string;
}

export function createEmulator(server: http.Server, baseUrl: string, opts: Options = {}): Emulator & { api: ApiServer } {
  // The SDK instance only signs webhook payloads (generateTestHeaderString); it calls nothing.
  const stripe = new Stripe('sk_test_emulator');
  const store = new Store();
  const emu = { store, stripe, baseUrl, webhooks: new Webhooks(store, stripe, kApiVersion) } as Emulator & { api: ApiServer };
  // The endpoint of --webhook-url (or of POST /_emulator/webhook_endpoint), kept across resets.
  let configured: string | null = null;
  const configure = () => {
    configured = opts.webhookUrl ? addEndpoint(emu, opts.webhookUrl, opts.webhookSecret, ['*']).id : null;
  };
  const setEndpoint = (url: string, secret?: string) => {
    if (configured) store.webhookEndpoints.delete(configured);
    opts = { webhookUrl: url, webhookSecret: secret ?? opts.webhookSecret };
    configure();
    return configured ? store.webhookEndpoints.get(configured) ?? null : null;
  };
  const reset = () => {
    emu.webhooks.reset();
    const fresh = new Store();
    Object.assign(store, fresh);
    resetCheckout();
    dunning.retryDays = [3, 5, 7];
    dunning.finalStatus = 'canceled';
    lists.embeddedInvoiceLines = 10;
    lists.maxPage = 100;
    emu.api.reset();
    configure();
  };
  const routes = [...customers, ...products, ...prices, ...paymentMethods, ...checkout, ...subscriptions,
                  ...invoices, ...invoiceItems, ...portal, ...testClocks, ...events, ...meters];
  emu.api = new ApiServer(emu, routes, control(emu, () => emu.api, reset, setEndpoint), pages(emu));
  server.on('request', (req, res) => emu.api.handle(req, res));
  configure();
  return emu;
}
