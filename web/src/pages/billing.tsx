// The billing portal (HSEA-029, HSEA-030): the current plan and its limits, the plans side by
// side with upgrade and downgrade (the prorated amount shown before confirming), payment methods
// (Stripe's billing portal), the invoice history with PDFs, and the past-due banner with
// "Pay now". Owners and the billing role change billing; admins see it.
import { useEffect, useState } from 'react';
import { api, listAll } from '../api';
import { currentRole, useSession } from '../session';
import {
  ItemTable,
  Link,
  Notice,
  Page,
  ProblemSummary,
  Section,
  useAction,
  useList,
} from '../ui';

interface Plan {
  id: string;
  name: string;
  description: string;
  currency: string;
  monthly_amount: number;
  yearly_amount: number;
  features: Record<string, boolean>;
  limits: Record<string, number>;
  sort_order?: number;
}
interface Subscription {
  id: string;
  plan_id: string;
  interval: 'month' | 'year';
  status: string;
  trial_end: string | null;
  current_period_end: string | null;
  cancel_at_period_end: boolean;
  pending_plan_id: string | null;
  stripe_subscription_id?: string | null;
  plan: Plan;
}
interface Preview {
  plan_id: string;
  interval: string;
  currency: string;
  amount_due: number;
  proration_amount: number;
  lines: { description: string; amount: number; proration: boolean }[];
}
interface Invoice {
  id: string;
  number: string | null;
  status: string;
  currency: string;
  total: number;
  amount_remaining: number;
  attempt_count: number;
  last_payment_error: string | null;
  next_payment_attempt: string | null;
  created_at: string;
  pdf_url: string;
}

// Minor units as the reader expects them ($1,234.56, ¥1,235): Intl knows each currency's digits.
export function money(minor: number, currency: string): string {
  const f = new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() });
  const digits = f.resolvedOptions().maximumFractionDigits ?? 2;
  return f.format(minor / 10 ** digits);
}

const limitLabels: Record<string, string> = {
  seats: 'Seats',
  api_calls: 'API calls per period',
  storage_bytes: 'Storage',
  requests_per_second: 'Requests per second',
};

function limitValue(key: string, value: number): string {
  if (key === 'storage_bytes') {
    const gib = value / 1024 ** 3;
    return gib >= 1 ? `${gib.toLocaleString('en-US')} GiB` : `${(value / 1024 ** 2).toFixed(0)} MiB`;
  }
  return value.toLocaleString('en-US');
}

function Limits({ plan }: { plan: Plan }) {
  const keys = Object.keys(limitLabels);
  return (
    <dl className="limits">
      {keys.map((k) => (
        <div key={k}>
          <dt>{limitLabels[k]}</dt>
          <dd>{k in plan.limits ? limitValue(k, plan.limits[k]) : 'Unlimited'}</dd>
        </div>
      ))}
    </dl>
  );
}

const day = (iso?: string | null) => (iso ? new Date(iso).toLocaleDateString('en-CA') : '—');

export function Billing() {
  const { me } = useSession();
  const canChange = ['owner', 'billing'].includes(currentRole(me) ?? '');
  const [sub, setSub] = useState<Subscription | null>(null);
  const [plans, setPlans] = useState<Plan[] | null>(null);
  const load = useAction();
  const invoices = useList(() => listAll<Invoice>('/api/invoices'));
  const [notice, setNotice] = useState('');

  async function reload() {
    const s = await load.run(() => api<Subscription>('GET', '/api/subscriptions/current'));
    if (s) setSub(s);
    const p = await load.run(() => api<{ data: Plan[] }>('GET', '/api/plans'));
    if (p) setPlans(p.data);
    await invoices.refresh();
  }
  useEffect(() => {
    void reload();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps

  const failing = (invoices.items ?? []).find((i) => i.status === 'open' && i.attempt_count > 0);
  return (
    <Page title="Billing">
      <ProblemSummary error={load.error} />
      {notice && <Notice>{notice}</Notice>}
      {(sub?.status === 'past_due' || failing) && (
        <PastDue invoice={failing} canPay={canChange} onPaid={async () => {
          setNotice('Thank you: the invoice is paid.');
          await reload();
        }} />
      )}
      {sub && <CurrentPlan sub={sub} />}
      {currentRole(me) !== 'billing' && (
        <p>
          <Link to="/account/usage">Usage in this period against the plan's limits</Link>
        </p>
      )}
      {sub && plans && (
        <ComparePlans sub={sub} plans={plans} canChange={canChange} onChanged={async (text) => {
          setNotice(text);
          await reload();
        }} />
      )}
      {canChange && <PaymentMethods />}
      <Section title="Invoices">
        <ProblemSummary error={invoices.error} />
        <ItemTable
          caption="Invoice history"
          columns={['Number', 'Date', 'Total', 'Status', '']}
          items={invoices.items}
          empty="No invoices yet."
          row={(i) => (
            <tr key={i.id}>
              <td>{i.number ?? '—'}</td>
              <td>{day(i.created_at)}</td>
              <td>{money(i.total, i.currency)}</td>
              <td>{i.status}</td>
              <td>
                <a href={i.pdf_url} download>
                  Download PDF<span className="visually-hidden"> of invoice {i.number}</span>
                </a>
              </td>
            </tr>
          )}
        />
      </Section>
    </Page>
  );
}

function PastDue(p: { invoice?: Invoice; canPay: boolean; onPaid: () => Promise<void> }) {
  const pay = useAction();
  const inv = p.invoice;
  return (
    <div className="banner" role="alert" data-testid="past-due-banner">
      <p>
        <strong>Your last payment failed.</strong>{' '}
        {inv ? `${money(inv.amount_remaining, inv.currency)} is due` : 'An invoice is due'}
        {inv?.last_payment_error ? ` (${inv.last_payment_error})` : ''}. Update your payment method
        and pay now to keep your subscription; after the grace period changes are suspended.
      </p>
      <ProblemSummary error={pay.error} />
      {inv && p.canPay && (
        <button type="button" disabled={pay.busy} onClick={async () => {
          if (await pay.run(() => api('POST', `/api/invoices/${inv.id}/pay`))) await p.onPaid();
        }}>
          Pay now
        </button>
      )}
    </div>
  );
}

function CurrentPlan({ sub }: { sub: Subscription }) {
  return (
    <Section title="Current plan">
      <p data-testid="current-plan">
        <strong>{sub.plan.name}</strong>
        {sub.plan.monthly_amount > 0 &&
          ` · ${money(sub.interval === 'year' ? sub.plan.yearly_amount : sub.plan.monthly_amount,
            sub.plan.currency)} per ${sub.interval}`}{' '}
        · status {sub.status.replace('_', ' ')}
        {sub.current_period_end && ` · renews ${day(sub.current_period_end)}`}
      </p>
      {sub.cancel_at_period_end && <p>Ends on {day(sub.current_period_end)}.</p>}
      {sub.pending_plan_id && <p>Changes to {sub.pending_plan_id} when the period ends.</p>}
      <Limits plan={sub.plan} />
    </Section>
  );
}

function ComparePlans(p: {
  sub: Subscription;
  plans: Plan[];
  canChange: boolean;
  onChanged: (notice: string) => Promise<void>;
}) {
  const [interval, setInterval] = useState<'month' | 'year'>(p.sub.interval ?? 'month');
  const [chosen, setChosen] = useState<Plan | null>(null);
  const [preview, setPreview] = useState<Preview | null>(null);
  const action = useAction();
  const price = (plan: Plan) => (interval === 'year' ? plan.yearly_amount : plan.monthly_amount);
  const current = p.plans.find((x) => x.id === p.sub.plan_id);
  const isUpgrade = (plan: Plan) => !current || price(plan) > price(current);
  const subscribed = Boolean(p.sub.stripe_subscription_id) && p.sub.status !== 'canceled';

  async function choose(plan: Plan) {
    setChosen(plan);
    setPreview(null);
    if (!subscribed) return; // a first paid plan goes through Checkout, no proration
    const pr = await action.run(() =>
      api<Preview>('GET', `/api/subscriptions/preview?plan_id=${encodeURIComponent(plan.id)}` +
        `&interval=${interval}`));
    if (pr) setPreview(pr);
  }
  async function confirm() {
    if (!chosen) return;
    if (!subscribed) {
      const back = `${window.location.origin}/account/billing`;
      const s = await action.run(() => api<{ checkout_url: string }>('POST',
        '/api/subscriptions/checkout',
        { plan_id: chosen.id, interval, success_url: `${back}?checkout=done`, cancel_url: back }));
      if (s) window.location.assign(s.checkout_url);
      return;
    }
    const up = isUpgrade(chosen);
    const ok = await action.run(() => api('POST',
      `/api/subscriptions/${up ? 'upgrade' : 'downgrade'}`,
      { plan_id: chosen.id, interval, when: up ? 'now' : 'period_end' }));
    if (ok !== undefined) {
      setChosen(null);
      setPreview(null);
      await p.onChanged(up ? `You are now on ${chosen.name}.`
        : `You move to ${chosen.name} when the current period ends.`);
    }
  }
  return (
    <Section title="Plans">
      <fieldset className="interval">
        <legend>Billing interval</legend>
        {(['month', 'year'] as const).map((i) => (
          <label key={i} className="check">
            <input type="radio" name="interval" checked={interval === i}
              onChange={() => setInterval(i)} />
            {i === 'month' ? 'Monthly' : 'Yearly'}
          </label>
        ))}
      </fieldset>
      <ItemTable
        caption="Plans compared"
        columns={['Plan', 'Price', 'Seats', 'API calls', '']}
        items={p.plans}
        row={(plan) => (
          <tr key={plan.id}>
            <th scope="row">{plan.name}</th>
            <td>{price(plan) === 0 ? 'Free' : `${money(price(plan), plan.currency)} / ${interval}`}</td>
            <td>{'seats' in plan.limits ? limitValue('seats', plan.limits.seats) : 'Unlimited'}</td>
            <td>
              {'api_calls' in plan.limits ? limitValue('api_calls', plan.limits.api_calls)
                : 'Unlimited'}
            </td>
            <td>
              {plan.id === p.sub.plan_id && interval === p.sub.interval ? (
                'Current plan'
              ) : p.canChange && price(plan) > 0 ? (
                <button type="button" onClick={() => void choose(plan)}>
                  {isUpgrade(plan) ? 'Upgrade' : 'Downgrade'}
                  <span className="visually-hidden"> to {plan.name}</span>
                </button>
              ) : null}
            </td>
          </tr>
        )}
      />
      <ProblemSummary error={action.error} />
      {chosen && (
        <div className="confirm" role="region" aria-label="Confirm the change"
          data-testid="plan-change">
          <h3>
            {isUpgrade(chosen) ? 'Upgrade' : 'Downgrade'} to {chosen.name}
          </h3>
          {!subscribed ? (
            <p>You will pay {money(price(chosen), chosen.currency)} per {interval} through Stripe
              Checkout.</p>
          ) : preview ? (
            <>
              <p data-testid="proration">
                {isUpgrade(chosen)
                  ? `Due now, prorated for the rest of this period: ${money(preview.proration_amount,
                    preview.currency)}. Next invoice: ${money(preview.amount_due, preview.currency)}.`
                  : `No charge now: the change takes effect when the current period ends. Next ` +
                    `invoice: ${money(preview.amount_due, preview.currency)}.`}
              </p>
              <ul>
                {preview.lines.map((l, n) => (
                  <li key={n}>{l.description}: {money(l.amount, preview.currency)}</li>
                ))}
              </ul>
            </>
          ) : (
            <p>Calculating the prorated amount…</p>
          )}
          <button type="button" disabled={action.busy || (subscribed && !preview)}
            onClick={() => void confirm()}>
            Confirm {isUpgrade(chosen) ? 'upgrade' : 'downgrade'}
          </button>{' '}
          <button type="button" onClick={() => { setChosen(null); setPreview(null); }}>
            Cancel
          </button>
        </div>
      )}
    </Section>
  );
}

function PaymentMethods() {
  const open = useAction();
  return (
    <Section title="Payment methods">
      <p>Cards and billing details are kept by Stripe; you manage them on Stripe's secure page.</p>
      <ProblemSummary error={open.error} />
      <button type="button" disabled={open.busy} onClick={async () => {
        const s = await open.run(() => api<{ url: string }>('POST', '/api/billing/portal-session'));
        if (s) window.location.assign(s.url);
      }}>
        Manage payment methods
      </button>
    </Section>
  );
}

