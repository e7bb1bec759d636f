// Events and their delivery: every change the emulator makes is an Event object (stored, listed
// by GET /v1/events) sent to each enabled webhook endpoint, signed with the SDK's own
// generateTestHeaderString. Failed deliveries are retried with backoff. The control API can hold
// events and release them late, reversed, shuffled or twice.
import Stripe from 'stripe';

import { Store, asSent } from './store';

type EventType = Stripe.Event['type'];
export type EventObject<T extends EventType> = Extract<Stripe.Event, { type: T }>['data']['object'];

export interface Delivery {
  event: string;
  type: string;
  endpoint: string;
  url: string;
  attempt: number;
  status: number | null;
  error: string | null;
  at: string;
}

export interface ReleaseOptions {
  order?: 'fifo' | 'reverse' | 'shuffle';
  duplicate?: boolean;
  delay_ms?: number;
}

// How to sign one delivery differently, for tests of a receiver's checks: a stale or future
// timestamp, or another secret (a bad signature).
export interface Signing {
  timestamp_offset?: number;
  secret?: string;
}

interface Pending {
  event: Stripe.Event;
  endpoint: Stripe.WebhookEndpoint;
  attempt: number;
  signing?: Signing;
}

export class Webhooks {
  deliveries: Delivery[] = [];
  static readonly kDefaultRetryDelaysMs = [250, 500, 1000, 2000, 4000, 8000];
  retryDelaysMs = [...Webhooks.kDefaultRetryDelaysMs];
  // Endpoint id -> further secrets whose v1 signatures are added (Stripe signs with the old and the
  // new secret while a secret is being rolled).
  extraSecrets = new Map<string, string[]>();
  private held: Pending[] | null = null;
  private inFlight = 0;
  private timers = new Set<NodeJS.Timeout>();
  private chain: Promise<void> = Promise.resolve();
  // Bumped by reset(): deliveries queued before it are dropped, and schedule no retries.
  private generation = 0;

  constructor(
    private readonly store: Store,
    private readonly stripe: Stripe,
    readonly apiVersion: string,
  ) {}

  // Records an event of `type` about `object` (a snapshot) and queues its delivery.
  emit<T extends EventType>(
    type: T,
    object: EventObject<T>,
    previous?: Record<string, unknown>,
    request?: { id: string | null; idempotency_key: string | null },
  ): Stripe.Event {
    const customer = (object as { customer?: unknown }).customer;
    const created = this.store.nowFor(typeof customer === 'string' ? customer : null);
    const data: { object: unknown; previous_attributes?: unknown } = {
      object: asSent(object),
    };
    if (previous && Object.keys(previous).length) data.previous_attributes = previous;
    const endpoints = this.endpointsFor(type);
    const event = {
      id: this.store.id('evt'),
      object: 'event',
      api_version: this.apiVersion,
      created,
      data,
      livemode: false,
      pending_webhooks: endpoints.length,
      request: request ?? { id: null, idempotency_key: null },
      type,
    } as unknown as Stripe.Event;
    this.store.events.set(event.id, event);
    for (const endpoint of endpoints) this.enqueue({ event, endpoint, attempt: 1 });
    return event;
  }

  private endpointsFor(type: string): Stripe.WebhookEndpoint[] {
    return Array.from(this.store.webhookEndpoints.values()).filter(
      (e) => e.status === 'enabled' && (e.enabled_events.includes('*') || e.enabled_events.includes(type)),
    );
  }

  hold(): void {
    if (!this.held) this.held = [];
  }
  get holding(): boolean {
    return this.held !== null;
  }
  heldEvents(): string[] {
    return (this.held ?? []).map((p) => p.event.id);
  }

  // Delivers what was held (and stops holding): in the order asked, each twice if asked.
  release(opts: ReleaseOptions = {}): number {
    const held = this.held ?? [];
    this.held = null;
    let batch = [...held];
    if (opts.order === 'reverse') batch.reverse();
    if (opts.order === 'shuffle') {
      for (let i = batch.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [batch[i], batch[j]] = [batch[j], batch[i]];
      }
    }
    if (opts.duplicate) batch = batch.flatMap((p) => [p, { ...p }]);
    const send = () => batch.forEach((p) => this.queueSend(p));
    if (opts.delay_ms && opts.delay_ms > 0) this.later(send, opts.delay_ms);
    else send();
    return batch.length;
  }

  // Resends one stored event now (to every enabled endpoint), e.g. to deliver it again later.
  resend(eventId: string, signing?: Signing): number {
    const event = this.store.events.get(eventId);
    if (!event) return 0;
    const endpoints = this.endpointsFor(event.type);
    // A deliberately mis-signed delivery is sent once (its rejection is the point).
    const attempt = signing ? this.retryDelaysMs.length + 1 : 1;
    for (const endpoint of endpoints) this.queueSend({ event, endpoint, attempt, signing });
    return endpoints.length;
  }

  // True when nothing is queued, in flight or waiting for a retry.
  idle(): boolean {
    return this.inFlight === 0 && this.timers.size === 0;
  }

  reset(): void {
    this.generation++;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.held = null;
    this.deliveries = [];
    this.extraSecrets.clear();
    this.retryDelaysMs = [...Webhooks.kDefaultRetryDelaysMs];
  }

  private enqueue(p: Pending): void {
    if (this.held) this.held.push(p);
    else this.queueSend(p);
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  // One delivery at a time, in queue order (so "in order" means in order unless asked otherwise);
  // a failed one is retried after its backoff without blocking the others.
  private queueSend(p: Pending): void {
    const generation = this.generation;
    this.inFlight++;
    this.chain = this.chain.then(async () => {
      try {
        if (generation === this.generation) await this.send(p, generation);
      } finally {
        this.inFlight--;
      }
    });
  }

  private async send(p: Pending, generation: number): Promise<void> {
    const payload = JSON.stringify(p.event, null, 2);
    const timestamp = Math.floor(Date.now() / 1000) + (p.signing?.timestamp_offset ?? 0);
    const secrets = p.signing?.secret
      ? [p.signing.secret]
      : [p.endpoint.secret ?? '', ...(this.extraSecrets.get(p.endpoint.id) ?? [])];
    const signatures = secrets.map((secret) =>
      this.stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp }).replace(/^t=\d+,/, ''));
    const header = `t=${timestamp},${signatures.join(',')}`;
    const record: Delivery = {
      event: p.event.id,
      type: p.event.type,
      endpoint: p.endpoint.id,
      url: p.endpoint.url,
      attempt: p.attempt,
      status: null,
      error: null,
      at: new Date().toISOString(),
    };
    this.deliveries.push(record);
    let ok = false;
    try {
      const res = await fetch(p.endpoint.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json; charset=utf-8',
          'Stripe-Signature': header,
          'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
        },
        body: payload,
        signal: AbortSignal.timeout(10000),
      });
      record.status = res.status;
      await res.arrayBuffer();
      ok = res.status >= 200 && res.status < 300;
    } catch (e) {
      record.error = e instanceof Error ? e.message : String(e);
    }
    if (!ok && p.attempt <= this.retryDelaysMs.length && generation === this.generation) {
      const delay = this.retryDelaysMs[p.attempt - 1];
      this.later(() => this.queueSend({ ...p, attempt: p.attempt + 1 }), delay);
    }
  }
}
