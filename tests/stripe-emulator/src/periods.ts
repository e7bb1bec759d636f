// Calendar arithmetic for billing periods, in UTC, as Stripe does it: a monthly period that
// starts on the 31st ends on the last day of a shorter month.
import type Stripe from 'stripe';

export function addInterval(ts: number, interval: Stripe.Price.Recurring.Interval, count = 1): number {
  const d = new Date(ts * 1000);
  switch (interval) {
    case 'day':
      return ts + 86400 * count;
    case 'week':
      return ts + 7 * 86400 * count;
    case 'month':
    case 'year': {
      const months = interval === 'year' ? 12 * count : count;
      const day = d.getUTCDate();
      const target = new Date(d.getTime());
      target.setUTCDate(1);
      target.setUTCMonth(target.getUTCMonth() + months);
      const last = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
      target.setUTCDate(Math.min(day, last));
      return Math.floor(target.getTime() / 1000);
    }
  }
  throw new Error(`unknown interval ${String(interval)}`);
}
