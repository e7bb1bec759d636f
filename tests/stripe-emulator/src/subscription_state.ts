// Changes of a subscription's state that several flows share (status, cancellation, period,
// price), each with the event Stripe sends for it.
import type Stripe from 'stripe';

import type { Emulator } from './router';
import type { Subscription } from './store';

export function setStatus(emu: Emulator, sub: Subscription, status: Stripe.Subscription.Status): void {
  if (sub.status === status) return;
  const previous = { status: sub.status };
  sub.status = status;
  emu.webhooks.emit('customer.subscription.updated', sub, previous);
}

export function cancelNow(emu: Emulator, sub: Subscription, reason: Stripe.Subscription.CancellationDetails.Reason): void {
  const now = emu.store.nowFor(sub.customer as string);
  sub.status = 'canceled';
  sub.canceled_at = sub.canceled_at ?? now;
  sub.ended_at = now;
  sub.cancellation_details = { comment: null, feedback: null, feedback_option: null, reason };
  emu.store.pendingItems = emu.store.pendingItems.filter((p) => p.subscription !== sub.id);
  emu.webhooks.emit('customer.subscription.deleted', sub);
}

// Sets the subscription's period (and its items') to [start, end).
export function setPeriod(sub: Subscription, start: number, end: number): void {
  sub.current_period_start = start;
  sub.current_period_end = end;
  for (const it of sub.items.data) {
    it.current_period_start = start;
    it.current_period_end = end;
  }
}
