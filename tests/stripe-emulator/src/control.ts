// The control API under /_emulator/ (README.md lists it): what a test does to Stripe's side
// that a real test would do in Stripe's dashboard or with its test helpers.
import type http from 'node:http';

import { dunning } from './payments';
import { advanceTo } from './clock';
import { complete } from './objects/checkout';
import type { Emulator } from './router';
import type { ApiServer, Fault } from './server';
import { StripeError } from './errors';
import { lists } from './store';
import type { ReleaseOptions } from './webhooks';

type Json = Record<string, unknown>;

export function control(
  emu: Emulator, api: () => ApiServer, reset: () => void,
  setEndpoint: (url: string, secret?: string) => { id: string } | null,
) {
  return async (req: http.IncomingMessage, body: string, url: URL): Promise<[number, unknown] | null> => {
    const method = req.method ?? 'GET';
    const path = url.pathname.slice('/_emulator'.length);
    let j: Json = {};
    if (body.trim()) {
      try {
        j = JSON.parse(body) as Json;
      } catch {
        return [400, { error: { type: 'invalid_request_error', message: 'control bodies are JSON' } }];
      }
    }
    const { store, webhooks } = emu;
    try {
      let m: RegExpExecArray | null;
      if (method === 'POST' && path === '/reset') {
        reset();
        return [200, { ok: true }];
      }
      if (method === 'POST' && path === '/webhook_endpoint' && typeof j.url === 'string') {
        const endpoint = setEndpoint(j.url, typeof j.secret === 'string' ? j.secret : undefined);
        if (endpoint && Array.isArray(j.extra_secrets)) {
          webhooks.extraSecrets.set(endpoint.id, j.extra_secrets.map(String));
        }
        return [200, endpoint];
      }
      if (method === 'GET' && path === '/requests') return [200, { data: api().requests }];
      if (method === 'POST' && path === '/faults') {
        api().faults.push({ ...(j as unknown as Fault), count: Number(j.count ?? 1) });
        return [200, { faults: api().faults }];
      }
      if (method === 'POST' && (m = /^\/checkout\/([^/]+)\/complete$/.exec(path))) {
        return [200, complete(emu, m[1], typeof j.card === 'string' ? j.card : undefined)];
      }
      if (method === 'POST' && (m = /^\/customers\/([^/]+)\/charges$/.exec(path))) {
        store.customer(m[1]);
        if (j.outcome === 'fail') store.failNextCharges.set(m[1], Number(j.count ?? 1));
        else store.failNextCharges.delete(m[1]);
        return [200, { customer: m[1], failing_next: store.failNextCharges.get(m[1]) ?? 0 }];
      }
      if (method === 'POST' && path === '/dunning') {
        if (Array.isArray(j.retry_days)) dunning.retryDays = j.retry_days.map(Number);
        if (j.final_status === 'unpaid' || j.final_status === 'canceled' || j.final_status === 'past_due') {
          dunning.finalStatus = j.final_status;
        }
        return [200, dunning];
      }
      if (method === 'POST' && path === '/lists') {
        for (const k of ['embedded_invoice_lines', 'max_page'] as const) {
          const v = j[k];
          if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 100)) {
            return [400, { error: { type: 'invalid_request_error', message: `${k} must be an integer 1-100` } }];
          }
        }
        if (typeof j.embedded_invoice_lines === 'number') lists.embeddedInvoiceLines = j.embedded_invoice_lines;
        if (typeof j.max_page === 'number') lists.maxPage = j.max_page;
        return [200, { embedded_invoice_lines: lists.embeddedInvoiceLines, max_page: lists.maxPage }];
      }
      if (method === 'POST' && path === '/time/advance') {
        const target = typeof j.to === 'number' ? j.to : store.now() + Number(j.seconds ?? 0);
        advanceTo(emu, null, target);
        return [200, { now: store.now() }];
      }
      if (method === 'GET' && path === '/time') return [200, { now: store.now() }];
      if (method === 'POST' && path === '/webhooks/hold') {
        webhooks.hold();
        return [200, { holding: true }];
      }
      if (method === 'POST' && path === '/webhooks/release') {
        const n = webhooks.release(j as ReleaseOptions);
        return [200, { released: n }];
      }
      if (method === 'GET' && path === '/webhooks/held') return [200, { data: webhooks.heldEvents() }];
      if (method === 'POST' && (m = /^\/events\/([^/]+)\/resend$/.exec(path))) {
        const signing = { timestamp_offset: typeof j.timestamp_offset === 'number' ? j.timestamp_offset : undefined,
                          secret: typeof j.secret === 'string' ? j.secret : undefined };
        const changed = (signing.timestamp_offset ?? 0) !== 0 || signing.secret !== undefined;
        return [200, { deliveries: webhooks.resend(m[1], changed ? signing : undefined) }];
      }
      if (method === 'GET' && path === '/webhooks/deliveries') {
        return [200, { idle: webhooks.idle(), data: webhooks.deliveries }];
      }
      if (method === 'POST' && path === '/webhooks/retry_delays') {
        if (Array.isArray(j.ms)) webhooks.retryDelaysMs = j.ms.map(Number);
        return [200, { ms: webhooks.retryDelaysMs }];
      }
      return null;
    } catch (e) {
      if (e instanceof StripeError) return [e.status, e.envelope()];
      throw e;
    }
  };
}
