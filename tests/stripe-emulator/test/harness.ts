// Starts an emulator in-process on a free port, an SDK client pointed at it (apiVersion pinned),
// and a webhook receiver that verifies every delivery with stripe.webhooks.constructEvent.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import Stripe from 'stripe';

import { createEmulator, kApiVersion } from '../src/emulator';

export const kWebhookSecret = 'whsec_emulator_test_secret';

export interface Received {
  event: Stripe.Event | null;
  error: string | null;
  signature: string;
}

export interface Harness {
  stripe: Stripe;
  baseUrl: string;
  receiverUrl: string;
  received: Received[];
  // Makes the receiver answer these statuses to the next deliveries (then 200).
  receiverStatuses: number[];
  control(method: string, path: string, body?: unknown): Promise<any>;
  waitIdle(): Promise<void>;
  close(): Promise<void>;
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

export async function start(): Promise<Harness> {
  const received: Received[] = [];
  const receiverStatuses: number[] = [];
  const client = new Stripe('sk_test_harness');
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const signature = String(req.headers['stripe-signature'] ?? '');
      const status = receiverStatuses.shift() ?? 200;
      try {
        const event = client.webhooks.constructEvent(body, signature, kWebhookSecret);
        if (status === 200) received.push({ event, error: null, signature });
      } catch (e) {
        received.push({ event: null, error: e instanceof Error ? e.message : String(e), signature });
      }
      res.writeHead(status);
      res.end();
    });
  });
  const receiverPort = await listen(receiver);
  const server = http.createServer();
  const port = await listen(server);
  const baseUrl = `http://127.0.0.1:${port}`;
  const emu = createEmulator(server, baseUrl, {
    webhookUrl: `http://127.0.0.1:${receiverPort}/hook`,
    webhookSecret: kWebhookSecret,
  });
  emu.webhooks.retryDelaysMs = [50, 100, 200];
  const stripe = new Stripe('sk_test_harness', {
    apiVersion: kApiVersion as Stripe.LatestApiVersion,
    host: '127.0.0.1',
    port,
    protocol: 'http',
    maxNetworkRetries: 0,
  });
  const control = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${baseUrl}/_emulator${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return r.json();
  };
  const waitIdle = async () => {
    for (let i = 0; i < 400; i++) {
      if (emu.webhooks.idle()) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('webhook deliveries did not settle');
  };
  const close = async () => {
    emu.webhooks.reset();
    await new Promise((r) => server.close(r));
    await new Promise((r) => receiver.close(r));
  };
  const receiverUrl = `http://127.0.0.1:${receiverPort}/hook`;
  return { stripe, baseUrl, receiverUrl, received, receiverStatuses, control, waitIdle, close };
}

// A customer with a monthly and a yearly price of one product, for the scenarios.
export async function catalog(stripe: Stripe) {
  const product = await stripe.products.create({ name: 'Pro' });
  const monthly = await stripe.prices.create({
    product: product.id, currency: 'usd', unit_amount: 3000, recurring: { interval: 'month' }, lookup_key: 'pro_monthly', transfer_lookup_key: true,
  });
  const starter = await stripe.prices.create({
    product: product.id, currency: 'usd', unit_amount: 1000, recurring: { interval: 'month' },
  });
  const yearly = await stripe.prices.create({
    product: product.id, currency: 'usd', unit_amount: 30000, recurring: { interval: 'year' },
  });
  return { product, monthly, starter, yearly };
}
