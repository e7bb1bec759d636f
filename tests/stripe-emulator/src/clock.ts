// Moving time: a test clock (or the default clock of customers without one) advances from due
// moment to due moment, so every renewal, trial end, retry and cancellation happens at its own
// time, in order, with events stamped with that time.
//
// Due moments of a subscription: its period end (renew, or cancel if cancel_at_period_end /
// cancel_at), its trial end (trialing -> active with the first charged invoice), the next
// automatic payment attempt of its open invoices (payments.ts: retries and the final status), and
// for an incomplete subscription 23 hours after creation (-> incomplete_expired, invoice void);
// three days before a trial ends, customer.subscription.trial_will_end.
import { finalizeInvoice, issueInvoice } from './invoicing';
import { finalLines, flatItem, usageSince } from './items';
import { interval, isMetered, periodLine } from './lines';
import { attemptPayment } from './payments';
import { cancelNow, setPeriod, setStatus } from './subscription_state';
import { addInterval } from './periods';
import type { Emulator } from './router';
import type { DraftUsageLine, Invoice, InvoiceLine, Subscription } from './store';

const kIncompleteExpiry = 23 * 3600;
// Stripe's default invoice finalization grace period ("Configure an invoice finalization grace
// period": "All invoices have a default finalization grace period of 1 hour. During the
// finalization grace period, you can continue to report usage for the previous billing period").
const kFinalizationGrace = 3600;
const kTrialWarning = 3 * 86400;

function onClock(emu: Emulator, customer: unknown, clock: string | null): boolean {
  return typeof customer === 'string' && emu.store.clockOf(customer) === clock;
}

function subDue(s: Subscription): number | null {
  switch (s.status) {
    case 'canceled':
    case 'incomplete_expired':
      return null;
    case 'incomplete':
      return s.created + kIncompleteExpiry;
    default: {
      const end = s.current_period_end;
      return s.cancel_at !== null ? Math.min(s.cancel_at, end) : end;
    }
  }
}

function next(emu: Emulator, clock: string | null): { at: number; run: () => void } | null {
  let best: { at: number; run: () => void } | null = null;
  const consider = (at: number | null, run: () => void) => {
    if (at !== null && (!best || at < best.at)) best = { at, run };
  };
  for (const s of emu.store.subscriptions.values()) {
    if (!onClock(emu, s.customer, clock)) continue;
    consider(subDue(s), () => periodEvent(emu, s));
    // customer.subscription.trial_will_end three days before a trial ends (at once if sooner).
    if (s.status === 'trialing' && s.trial_end !== null && !emu.store.trialWillEndSent.has(s.id)) {
      consider(Math.max(s.trial_end - kTrialWarning, emu.store.now(clock)), () => {
        emu.store.trialWillEndSent.add(s.id);
        emu.webhooks.emit('customer.subscription.trial_will_end', s);
      });
    }
  }
  for (const inv of emu.store.invoices.values()) {
    if (inv.status === 'draft' && inv.automatically_finalizes_at !== null && emu.store.draftRenewals.has(inv.id)) {
      if (onClock(emu, inv.customer, clock)) consider(inv.automatically_finalizes_at, () => finalizeRenewal(emu, inv));
      continue;
    }
    if (inv.status !== 'open' || inv.next_payment_attempt === null) continue;
    if (!onClock(emu, inv.customer, clock)) continue;
    consider(inv.next_payment_attempt, () => retry(emu, inv));
  }
  return best;
}

function retry(emu: Emulator, inv: Invoice): void {
  const sub = inv.subscription ? emu.store.subscriptions.get(inv.subscription) : undefined;
  if (sub && (sub.status === 'canceled' || sub.status === 'incomplete_expired')) {
    inv.next_payment_attempt = null;
    return;
  }
  attemptPayment(emu, inv, true);
}

function periodEvent(emu: Emulator, s: Subscription): void {
  const { store } = emu;
  const now = store.nowFor(s.customer as string);
  if (s.status === 'incomplete') {
    s.status = 'incomplete_expired';
    s.ended_at = now;
    for (const inv of store.invoices.values()) {
      if (inv.subscription === s.id && inv.status === 'open') {
        inv.status = 'void';
        inv.next_payment_attempt = null;
        inv.status_transitions.voided_at = now;
        emu.webhooks.emit('invoice.voided', inv);
      }
    }
    emu.webhooks.emit('customer.subscription.updated', s, { status: 'incomplete' });
    return;
  }
  if (s.cancel_at_period_end || (s.cancel_at !== null && s.cancel_at <= now)) {
    // Its final invoice: the period's metered usage and pending prorations (Stripe's "Cancel
    // subscriptions" guide, in its earlier wording: "Any metered usage is charged for in a final
    // invoice when the subscription cancels at the end of the billing period").
    const lines = finalLines(store, s, now, false);
    if (lines.length > 0) {
      const inv = issueInvoice(emu, s.customer as string, s, lines, 'subscription_cycle');
      if (inv.status === 'open') attemptPayment(emu, inv, true);
    }
    cancelNow(emu, s, 'cancellation_requested');
    return;
  }
  // Renewal: the next period, its invoice (with pending prorations), one payment attempt.
  const r = interval(flatItem(s).price);
  const start = s.current_period_end;
  const end = addInterval(start, r.interval, r.interval_count);
  const wasTrial = s.status === 'trialing';
  const previous = { current_period_start: s.current_period_start, current_period_end: s.current_period_end, status: s.status };
  setPeriod(s, start, end);
  if (wasTrial) {
    s.status = 'active';
    s.billing_cycle_anchor = start;
  }
  emu.webhooks.emit('customer.subscription.updated', s, previous);
  const pending = store.pendingItems.filter((x) => x.subscription === s.id);
  store.pendingItems = store.pendingItems.filter((x) => x.subscription !== s.id);
  // Licensed prices are billed for the period ahead, metered ones for the usage of the one ended.
  // A metered item added (or given another price) within the period bills the usage since then;
  // one deleted within it bills nothing (items.ts).
  const [from, to] = [previous.current_period_start, previous.current_period_end];
  const lines = [...pending.map((x) => x.line)];
  const metered: DraftUsageLine[] = [];
  for (const item of s.items.data) {
    const since = Math.max(from, usageSince(store, item));
    if (isMetered(item.price)) {
      metered.push({ index: lines.length, price: item.price, period: [from, to], window: [since, to] });
      lines.push(periodLine(store, s, item.price, 0, from, to, [since, to]));
    } else {
      lines.push(periodLine(store, s, item.price, item.quantity ?? 1, start, end));
    }
  }
  // With metered usage the invoice stays a draft for the grace period: usage of the period ended
  // reported meanwhile is on it (finalizeRenewal). Without, it is finalized and charged at once
  // (the emulator's simplification: Stripe holds those an hour as well).
  if (metered.length > 0) {
    const inv = issueInvoice(emu, s.customer as string, s, lines, 'subscription_cycle', start + kFinalizationGrace);
    store.draftRenewals.set(inv.id, { subscription: s.id, wasTrial, metered });
    return;
  }
  const inv = issueInvoice(emu, s.customer as string, s, lines, 'subscription_cycle');
  chargeRenewal(emu, s, inv, wasTrial);
}

function chargeRenewal(emu: Emulator, s: Subscription, inv: Invoice, wasTrial: boolean): void {
  if (inv.status === 'open') {
    const decline = attemptPayment(emu, inv, true);
    if (decline && wasTrial && s.status === 'active') setStatus(emu, s, 'past_due');
  }
}

// The end of a renewal invoice's grace period: its metered lines bill the usage of their period
// as the meter holds it now (also events reported after the renewal, dated within the period),
// then it is finalized and charged.
function finalizeRenewal(emu: Emulator, inv: Invoice): void {
  const { store } = emu;
  const draft = store.draftRenewals.get(inv.id);
  store.draftRenewals.delete(inv.id);
  const s = draft ? store.subscriptions.get(draft.subscription) : undefined;
  if (!draft || !s || inv.status !== 'draft') return;
  const lines = inv.lines.data as InvoiceLine[];
  for (const m of draft.metered) {
    const line = periodLine(store, s, m.price, 0, m.period[0], m.period[1], m.window);
    line.id = lines[m.index].id;
    line.invoice = inv.id;
    lines[m.index] = line;
  }
  finalizeInvoice(emu, inv);
  chargeRenewal(emu, s, inv, draft.wasTrial);
}

// Advances `clock` (null: the default clock) to `target`, running everything due on the way.
export function advanceTo(emu: Emulator, clock: string | null, target: number): void {
  const { store } = emu;
  const set = (t: number) => {
    if (clock) {
      const c = store.testClocks.get(clock);
      if (c) c.frozen_time = t;
    } else {
      store.defaultClockOffset = t - Math.floor(Date.now() / 1000);
    }
  };
  for (let guard = 0; guard < 10000; guard++) {
    const n = next(emu, clock);
    if (!n || n.at > target) break;
    if (n.at > store.now(clock)) set(n.at);
    n.run();
  }
  if (target > store.now(clock)) set(target);
}
