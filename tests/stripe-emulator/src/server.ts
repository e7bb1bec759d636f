// The HTTP side of the emulator: Stripe's wire protocol (Bearer sk_test_ auth, form-encoded
// bodies, JSON answers, the error envelope, Request-Id, Stripe-Version, idempotency keys), the
// request log and injected faults, and the routing to objects/* and control.ts.
import { createHash } from 'node:crypto';
import http from 'node:http';

import { Params, decodeForm } from './encoding';
import { StripeError } from './errors';
import type { Ctx, Emulator, Route } from './router';
import { asSent, expand } from './store';

export interface LoggedRequest {
  id: string;
  method: string;
  path: string;
  params: Params;
  idempotency_key: string | null;
  stripe_version: string | null;
  authorization: string | null;
  status: number;
  replayed: boolean;
  at: string;
}

export interface Fault {
  method?: string;
  path_prefix: string;
  status: number;
  count: number;
  should_retry?: boolean;
}

interface Stored {
  requestId: string;
  method: string;
  path: string;
  fingerprint: string;
  status: number;
  body: string;
}

interface Compiled {
  route: Route;
  re: RegExp;
}

export class ApiServer {
  requests: LoggedRequest[] = [];
  faults: Fault[] = [];
  private idempotency = new Map<string, Stored>();
  private compiled: Compiled[];

  constructor(
    private readonly emu: Emulator,
    routes: Route[],
    private readonly control: (req: http.IncomingMessage, body: string, url: URL) => Promise<[number, unknown] | null>,
    private readonly pages: (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => boolean,
  ) {
    this.compiled = routes.map((route) => ({
      route,
      re: new RegExp('^' + route.path.replace(/:[a-z_]+/g, '([^/]+)') + '$'),
    }));
  }

  reset(): void {
    this.requests = [];
    this.faults = [];
    this.idempotency.clear();
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      this.dispatch(req, res, body).catch((e: unknown) => {
        const msg = e instanceof Error ? e.stack ?? e.message : String(e);
        process.stderr.write(`stripe-emulator: ${msg}\n`);
        if (!res.headersSent) this.json(res, 500, { error: { type: 'api_error', message: msg } });
      });
    });
  }

  private json(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
    const body = JSON.stringify(value, null, 2);
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(body);
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse, body: string) {
    const url = new URL(req.url ?? '/', this.emu.baseUrl);
    if (url.pathname.startsWith('/_emulator/')) {
      const answer = await this.control(req, body, url);
      if (answer) return this.json(res, answer[0], answer[1]);
      return this.json(res, 404, { error: { type: 'invalid_request_error', message: 'no such control route' } });
    }
    if (!url.pathname.startsWith('/v1/')) {
      if (this.pages(req, url, res)) return;
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return res.end('not found');
    }
    this.api(req, res, body, url);
  }

  private api(req: http.IncomingMessage, res: http.ServerResponse, body: string, url: URL): void {
    const { store } = this.emu;
    const requestId = store.id('req');
    const method = (req.method ?? 'GET').toUpperCase();
    const version = header(req, 'stripe-version');
    const key = method === 'GET' ? null : header(req, 'idempotency-key');
    const auth = header(req, 'authorization');
    const baseHeaders: Record<string, string> = {
      'Request-Id': requestId,
      'Stripe-Version': version ?? this.emu.webhooks.apiVersion,
    };
    let params: Params = {};
    const log: LoggedRequest = {
      id: requestId, method, path: url.pathname, params, idempotency_key: key,
      stripe_version: version, authorization: auth ? auth.replace(/(sk_test_.{4}).*/, '$1…') : null,
      status: 0, replayed: false, at: new Date().toISOString(),
    };
    this.requests.push(log);
    const send = (status: number, value: unknown, extra: Record<string, string> = {}) => {
      log.status = status;
      this.json(res, status, value, { ...baseHeaders, ...extra });
    };
    const fail = (e: StripeError) => {
      const extra: Record<string, string> = {};
      if (e.status === 409 || e.status >= 500 || e.status === 429) extra['Stripe-Should-Retry'] = 'true';
      send(e.status, e.envelope(), extra);
    };
    try {
      const m = /^Bearer (.*)$/.exec(auth ?? '');
      if (!m) {
        throw new StripeError(401, 'invalid_request_error',
          'You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. \'Authorization: Bearer YOUR_SECRET_KEY\').');
      }
      if (!/^sk_test_\w+$/.test(m[1])) {
        throw new StripeError(401, 'invalid_request_error',
          `Invalid API Key provided: ${m[1].slice(0, 8)}****`, 'api_key_invalid');
      }
      // POST carries its parameters in the body, GET in the query; DELETE in either.
      const query = url.search.slice(1);
      const text = method === 'POST' ? body : method === 'DELETE' && body ? [query, body].filter(Boolean).join('&') : query;
      params = decodeForm(text);
      log.params = params;
    } catch (e) {
      if (e instanceof StripeError) return fail(e);
      throw e;
    }
    // Injected faults (429, 5xx) for clients' retry logic; they do not touch state.
    const fault = this.faults.find(
      (f) => f.count > 0 && url.pathname.startsWith(f.path_prefix) && (!f.method || f.method === method));
    if (fault) {
      fault.count--;
      const type = fault.status === 429 ? 'rate_limit_error' : 'api_error';
      const extra: Record<string, string> = {};
      if (fault.should_retry !== undefined) extra['Stripe-Should-Retry'] = String(fault.should_retry);
      return send(fault.status, { error: { type, message: `Injected fault ${fault.status}` } }, extra);
    }
    // Idempotency: the same key replays the first answer (for the same parameters); another
    // request under the same key is refused, as Stripe does (keys are kept for the run).
    const fingerprint = createHash('sha256').update(`${method} ${url.pathname}${url.search}\n${body}`).digest('hex');
    if (key) {
      const stored = this.idempotency.get(key);
      if (stored) {
        if (stored.fingerprint !== fingerprint) {
          return fail(new StripeError(400, 'idempotency_error',
            `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`));
        }
        log.status = stored.status;
        log.replayed = true;
        res.writeHead(stored.status, {
          'Content-Type': 'application/json', ...baseHeaders,
          'Idempotency-Key': key, 'Idempotent-Replayed': 'true', 'Original-Request': stored.requestId,
        });
        return void res.end(stored.body);
      }
    }
    let status = 200;
    let value: unknown;
    try {
      const found = this.match(method, url.pathname);
      if (!found) {
        throw new StripeError(404, 'invalid_request_error',
          `Unrecognized request URL (${method}: ${url.pathname}). The Stripe emulator implements only what HSEA uses; see tests/stripe-emulator/README.md.`);
      }
      const ctx: Ctx = { emu: this.emu, params, path: found.captures, requestId, idempotencyKey: key };
      const result = found.route.handler(ctx);
      const paths = Array.isArray(params.expand) ? params.expand.map(String) : [];
      value = asSent(paths.length ? expand(this.emu.store, result, paths) : result);
    } catch (e) {
      if (!(e instanceof StripeError)) throw e;
      status = e.status;
      value = e.envelope();
    }
    const text = JSON.stringify(value, null, 2);
    // Stripe keeps the answers of POSTs under their key, errors of 4xx included (not 5xx).
    if (key && status < 500) {
      this.idempotency.set(key, { requestId, method, path: url.pathname, fingerprint, status, body: text });
    }
    log.status = status;
    const extra: Record<string, string> = key ? { 'Idempotency-Key': key, 'Original-Request': requestId } : {};
    res.writeHead(status, { 'Content-Type': 'application/json', ...baseHeaders, ...extra });
    res.end(text);
  }

  private match(method: string, path: string): { route: Route; captures: string[] } | null {
    for (const c of this.compiled) {
      if (c.route.method !== method) continue;
      const m = c.re.exec(path);
      if (m) return { route: c.route, captures: m.slice(1).map(decodeURIComponent) };
    }
    return null;
  }
}

function header(req: http.IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  if (Array.isArray(v)) return v[0] ?? null;
  return v ?? null;
}
