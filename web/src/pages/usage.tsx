// The usage dashboard (the usage part of HSEA-029, over HSEA-026/027): the current billing
// period, every meter's usage against the plan's quota with its state (ok, past the soft
// threshold, over the hard limit), and a chart of one meter by day. Figures come from
// GET /api/usage/summary (the period's events, live) and GET /api/usage (the rollups, brought up
// to date by a job every few minutes, so the chart may lag the totals a little).
import { useCallback, useEffect, useId, useState } from 'react';
import { api, ApiError } from '../api';
import { currentRole, useSession } from '../session';
import { Link, Page, ProblemSummary, Section } from '../ui';

interface MeterUsage {
  meter: string;
  used: number;
  limit: number | null;
  soft_limit: number | null;
  hard_limit: number | null;
  remaining: number | null;
  state: 'ok' | 'warning' | 'exceeded';
  resets_at: string;
  // Billed by usage (the plan's metered meters): the limit is the amount included in the price,
  // and use beyond it (`overage`) is charged, never refused.
  metered: boolean;
  overage?: number;
  // A gauge (storage, seats) is a current value, not a sum of the period's events.
  kind: 'counter' | 'gauge';
}
interface UsageSummary {
  period: { start: string; end: string };
  meters: MeterUsage[];
}
interface UsageHistory {
  granularity: 'day' | 'month';
  data: { meter: string; period_start: string; quantity: number }[];
}

// ---- formatting -------------------------------------------------------------------------------

const platformMeters: Record<string, string> = {
  api_calls: 'API calls',
  storage_bytes: 'Storage',
  seats: 'Seats',
};
const meterLabel = (meter: string) => platformMeters[meter] ?? meter;

export const count = (n: number) => n.toLocaleString('en-US');
// A share (0..1) as a percentage with at most one decimal: 12.5%.
export const percent = (share: number) =>
  `${(share * 100).toLocaleString('en-US', { maximumFractionDigits: 1 })}%`;

// Binary units, as the plans state their storage limits (1 GiB = 1,073,741,824 bytes).
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toLocaleString('en-US', { maximumFractionDigits: digits })} ${units[unit]}`;
}

const amount = (meter: string, n: number) => (meter === 'storage_bytes' ? bytes(n) : count(n));

// Dates as the API counts them: UTC days and months.
const utcDate = (d: Date | string) =>
  new Date(d).toLocaleDateString('en-US', {
    timeZone: 'UTC', year: 'numeric', month: 'short', day: 'numeric',
  });
export const utcDateTime = (iso: string) =>
  `${new Date(iso).toLocaleString('en-US', {
    timeZone: 'UTC', dateStyle: 'medium', timeStyle: 'short', hourCycle: 'h23',
  })} UTC`;

function until(iso: string): string {
  const seconds = Math.max(0, (new Date(iso).getTime() - Date.now()) / 1000);
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min`;
  if (seconds < 2 * 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

// A metered meter used beyond its included amount: charged per use, which is neither a warning
// nor a reason to upgrade.
const billed = (m: MeterUsage) => m.metered && (m.overage ?? 0) > 0;
// The state as shown: the API's, or "billed" for use charged beyond the included amount.
const shownState = (m: MeterUsage) => (billed(m) ? 'billed' : m.state);

// At the hard limit is "reached" (no more seats, API calls refused); past it (product events are
// recorded beyond it) "over".
function stateText(m: MeterUsage): string {
  if (billed(m)) return 'Billed per use';
  if (m.state === 'ok') return 'Within limit';
  if (m.state === 'warning' && m.metered) return 'Near the included amount';
  if (m.state === 'warning') return 'Warning: near the limit';
  return m.used > (m.hard_limit ?? m.limit ?? 0) ? 'Over the limit' : 'Limit reached';
}

// Platform meters first, then the product's own in name order.
function ordered(meters: MeterUsage[]): MeterUsage[] {
  const rank = (m: string) => {
    const i = Object.keys(platformMeters).indexOf(m);
    return i < 0 ? 99 : i;
  };
  return [...meters].sort(
    (a, b) => rank(a.meter) - rank(b.meter) || a.meter.localeCompare(b.meter),
  );
}

// ---- the page ---------------------------------------------------------------------------------

export function Usage() {
  const { me } = useSession();
  const role = currentRole(me) ?? '';
  const [summary, setSummary] = useState<UsageSummary | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);

  const load = useCallback(async () => {
    setLoading(true);
    setError(null);
    try {
      setSummary(await api<UsageSummary>('GET', '/api/usage/summary'));
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, { title: String(e) }));
    } finally {
      setLoading(false);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  return (
    <Page title="Usage">
      {loading && !summary && (
        <p role="status" aria-busy="true">
          Loading usage…
        </p>
      )}
      {error && (
        <>
          <ProblemSummary error={error} />
          <button type="button" onClick={() => void load()} disabled={loading}>
            Try again
          </button>
        </>
      )}
      {summary && (
        <>
          <PeriodFacts summary={summary} />
          <LimitBanner meters={summary.meters} role={role} />
          <Meters meters={ordered(summary.meters)} />
          <DailyChart summary={summary} />
        </>
      )}
    </Page>
  );
}

function PeriodFacts({ summary }: { summary: UsageSummary }) {
  const { start, end } = summary.period;
  // The period's end is exclusive: its last day is the one before.
  const lastDay = new Date(new Date(end).getTime() - 1000);
  return (
    <dl className="period" data-testid="usage-period">
      <div>
        <dt>Billing period</dt>
        <dd>
          {utcDate(start)} – {utcDate(lastDay)}
        </dd>
      </div>
      <div>
        <dt>Usage resets</dt>
        <dd>
          {utcDateTime(end)} (in {until(end)})
        </dd>
      </div>
    </dl>
  );
}

// Near or over a limit: say what happens and where to upgrade (owners change the plan, admins see
// the billing page, members neither; the billing role cannot read usage). A metered meter is
// never refused: use beyond its included amount is said to be billed, without the upgrade.
function LimitBanner({ meters, role }: { meters: MeterUsage[]; role: string }) {
  const over = meters.filter((m) => m.state === 'exceeded');
  const near = meters.filter((m) => m.state === 'warning' && !m.metered);
  const charged = meters.filter(billed);
  if (over.length === 0 && near.length === 0 && charged.length === 0) return null;
  const names = (ms: MeterUsage[]) => ms.map((m) => meterLabel(m.meter)).join(', ');
  const limited = over.length > 0 || near.length > 0;
  const kind = over.length ? 'banner-danger' : near.length ? 'banner-warning' : 'banner-info';
  return (
    <div className={`banner ${kind}`} role="status" data-testid="usage-limit-banner">
      {over.length > 0 && (
        <p>
          <strong>Limit reached:</strong> {names(over)}.{' '}
          {over.some((m) => m.meter === 'api_calls') &&
            'API requests are refused (429 quota_exceeded) until the period resets. '}
        </p>
      )}
      {near.length > 0 && (
        <p>
          <strong>Near the limit:</strong> {names(near)} passed the warning threshold of this
          period.
        </p>
      )}
      {charged.map((m) => (
        <p key={m.meter}>
          <strong>Billed per use:</strong> {meterLabel(m.meter)} went{' '}
          {amount(m.meter, m.overage ?? 0)} beyond the {amount(m.meter, m.limit ?? 0)} included
          in your plan this period; that use is billed per use and never refused.
        </p>
      ))}
      {limited && (
        <p>
          {role === 'owner' ? (
            <Link to="/account/billing">Upgrade your plan for higher limits</Link>
          ) : role === 'admin' ? (
            <>
              <Link to="/account/billing">Compare the plans</Link>; an owner of your organization
              can upgrade for higher limits.
            </>
          ) : (
            'An owner of your organization can upgrade the plan for higher limits.'
          )}
        </p>
      )}
    </div>
  );
}

function Meters({ meters }: { meters: MeterUsage[] }) {
  return (
    <Section title="This period">
      {meters.length === 0 ? (
        <p>No usage recorded in this period yet.</p>
      ) : (
        <table className="meters">
          <caption>Usage per meter against the plan's limits</caption>
          <thead>
            <tr>
              <th scope="col">Meter</th>
              <th scope="col">Used</th>
              <th scope="col">Limit</th>
              <th scope="col">Share of limit</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {meters.map((m) => (
              <MeterRow key={m.meter} m={m} />
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function MeterRow({ m }: { m: MeterUsage }) {
  const share = m.limit ? m.used / m.limit : 0;
  const soft = m.limit && m.soft_limit !== null ? m.soft_limit / m.limit : null;
  const state = shownState(m);
  return (
    <tr data-testid={`meter-${m.meter}`} data-state={state} data-kind={m.kind}>
      <th scope="row">
        {meterLabel(m.meter)}
        {!(m.meter in platformMeters) && <span className="muted"> (product)</span>}
      </th>
      <td>
        <span data-testid="used">{amount(m.meter, m.used)}</span>
        {m.kind === 'gauge' && <span className="muted"> now</span>}
      </td>
      <td>
        <span data-testid="limit">{m.limit === null ? 'Unlimited' : amount(m.meter, m.limit)}</span>
        {m.limit !== null && m.metered && <span className="muted"> included</span>}
        {m.limit !== null && !m.metered && m.hard_limit !== null && m.hard_limit !== m.limit && (
          <span className="muted"> (refused at {amount(m.meter, m.hard_limit)})</span>
        )}
      </td>
      <td>
        {m.limit === null ? (
          '—'
        ) : (
          <div className="usage-share">
            {/* The bar repeats the percentage beside it, so it is hidden from screen readers. */}
            <div className={`usage-bar usage-${state}`} aria-hidden="true">
              <div className="usage-fill" style={{ width: `${Math.min(share, 1) * 100}%` }} />
              {soft !== null && soft < 1 && (
                <div className="usage-soft" style={{ left: `${soft * 100}%` }} />
              )}
            </div>
            <span>{percent(share)}</span>
          </div>
        )}
      </td>
      <td>
        <span className={`state state-${state}`} data-testid="state">
          {stateText(m)}
        </span>
        {billed(m) ? (
          <span className="muted">
            {' '}
            · <span data-testid="overage">{amount(m.meter, m.overage ?? 0)}</span> beyond the
            included amount
          </span>
        ) : (
          m.state !== 'ok' &&
          m.remaining !== null && (
            <span className="muted">
              {' '}
              · {amount(m.meter, m.remaining)} {m.metered ? 'until billed per use' : 'left'}
            </span>
          )
        )}
      </td>
    </tr>
  );
}

// ---- the chart --------------------------------------------------------------------------------

interface Bucket {
  start: Date;
  value: number;
  past: boolean; // begun by now (a future day shows no bar and is not listed)
}

// The period's buckets: UTC days, or months for a period longer than two months (a yearly plan).
function buckets(period: { start: string; end: string }): {
  granularity: 'day' | 'month';
  list: Date[];
} {
  const start = new Date(period.start);
  const end = new Date(period.end);
  const granularity = end.getTime() - start.getTime() > 62 * 86400 * 1000 ? 'month' : 'day';
  const list: Date[] = [];
  let t =
    granularity === 'day'
      ? new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()))
      : new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), 1));
  while (t < end && list.length < 400) {
    list.push(t);
    t =
      granularity === 'day'
        ? new Date(t.getTime() + 86400 * 1000)
        : new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth() + 1, 1));
  }
  return { granularity, list };
}

const isoDay = (d: Date) => d.toISOString().slice(0, 10);

function DailyChart({ summary }: { summary: UsageSummary }) {
  // Seats are counted when read, not recorded as events: they have no history.
  const choices = ordered(summary.meters).filter((m) => m.meter !== 'seats');
  const [meter, setMeter] = useState(
    () => (choices.find((m) => m.used > 0) ?? choices[0])?.meter ?? '',
  );
  const [data, setData] = useState<{ meter: string; list: Bucket[] } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const selectId = useId();
  const { granularity, list } = buckets(summary.period);

  useEffect(() => {
    if (!meter) return;
    let current = true;
    setError(null);
    const q = new URLSearchParams({
      meter,
      from: summary.period.start,
      to: summary.period.end,
      granularity,
    });
    api<UsageHistory>('GET', `/api/usage?${q}`)
      .then((h) => {
        if (!current) return;
        const by = new Map(h.data.map((p) => [new Date(p.period_start).getTime(), p.quantity]));
        const now = Date.now();
        setData({
          meter,
          list: list.map((start) => ({
            start,
            value: by.get(start.getTime()) ?? 0,
            past: start.getTime() <= now,
          })),
        });
      })
      .catch((e) => {
        if (current) setError(e instanceof ApiError ? e : new ApiError(0, { title: String(e) }));
      });
    return () => {
      current = false;
    };
    // The buckets and granularity follow from the period, which is in the dependencies.
  }, [meter, summary.period.start, summary.period.end]); // eslint-disable-line

  if (choices.length === 0) return null;
  const label = granularity === 'day' ? 'day' : 'month';
  // A gauge's figure per day or month is its highest value then (the rollups keep the peak).
  const gauge = choices.find((m) => m.meter === meter)?.kind === 'gauge';
  const lastDay = new Date(new Date(summary.period.end).getTime() - 1000);
  const title = `${meterLabel(meter)}${gauge ? ', highest' : ''} per ${label}, ${utcDate(
    summary.period.start)} – ${utcDate(lastDay)} (UTC)`;
  const shown = data && data.meter === meter ? data : null;
  return (
    <Section title={granularity === 'day' ? 'Usage by day' : 'Usage by month'}>
      <div className="field chart-meter">
        <label htmlFor={selectId}>Meter</label>
        <select id={selectId} value={meter} onChange={(e) => setMeter(e.target.value)}>
          {choices.map((m) => (
            <option key={m.meter} value={m.meter}>
              {meterLabel(m.meter)}
            </option>
          ))}
        </select>
      </div>
      <ProblemSummary error={error} />
      {!shown && !error && (
        <p role="status" aria-busy="true">
          Loading the chart…
        </p>
      )}
      {shown && (
        <BarChart meter={meter} title={title} buckets={shown.list} granularity={granularity}
          used={choices.find((m) => m.meter === meter)?.used ?? 0} gauge={gauge} />
      )}
      <p className="hint">
        Figures per {label} are brought up to date every few minutes, so the latest usage can
        reach the chart a little after the totals above.
      </p>
    </Section>
  );
}

const chartWidth = 720;
const chartHeight = 240;
const pad = { top: 16, right: 12, bottom: 28, left: 72 };

// An inline SVG bar chart: one bar per bucket, each with its value as a tooltip; the same values
// follow as a table for keyboard and screen-reader users.
function BarChart(p: {
  meter: string;
  title: string;
  buckets: Bucket[];
  granularity: 'day' | 'month';
  used: number; // the period's total by the summary (a gauge's current value)
  gauge: boolean; // each bucket holds the highest value, not a sum: no total
}) {
  const titleId = useId();
  const descId = useId();
  const past = p.buckets.filter((b) => b.past);
  const total = past.reduce((s, b) => s + b.value, 0);
  const max = Math.max(0, ...p.buckets.map((b) => b.value));
  const name = (d: Date) =>
    p.granularity === 'day'
      ? utcDate(d)
      : d.toLocaleDateString('en-US', { timeZone: 'UTC', year: 'numeric', month: 'long' });
  if (total === 0) {
    return (
      <p data-testid="usage-chart-empty">
        {p.used > 0
          ? `The ${p.granularity === 'day' ? 'daily' : 'monthly'} figures of ${meterLabel(
            p.meter)} are not up to date yet; try again in a few minutes.`
          : `Nothing recorded for ${meterLabel(p.meter)} in this period yet.`}
      </p>
    );
  }
  const peak = past.reduce((a, b) => (b.value > a.value ? b : a));
  // A gauge's buckets are peaks: their sum would mean nothing, so no total is given.
  const highest = `${amount(p.meter, peak.value)} on ${name(peak.start)}`;
  const described = p.gauge
    ? `Highest ${highest}`
    : `Total ${amount(p.meter, total)}; highest ${highest}`;
  const innerW = chartWidth - pad.left - pad.right;
  const innerH = chartHeight - pad.top - pad.bottom;
  const slot = innerW / p.buckets.length;
  const barW = Math.max(2, slot * 0.7);
  const y = (v: number) => pad.top + innerH - (max ? (v / max) * innerH : 0);
  // Label every day when they fit, else every few (and always the first).
  const every = Math.ceil(p.buckets.length / 16);
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${chartWidth} ${chartHeight}`} role="img"
        aria-labelledby={`${titleId} ${descId}`} data-testid="usage-chart">
        <title id={titleId}>{p.title}</title>
        <desc id={descId}>
          {`${described}. The values are listed in the table below the chart.`}
        </desc>
        {[0, 0.5, 1].map((f) => (
          <g key={f} className="grid">
            <line x1={pad.left} x2={chartWidth - pad.right} y1={y(max * f)} y2={y(max * f)} />
            <text x={pad.left - 6} y={y(max * f) + 4} textAnchor="end">
              {amount(p.meter, Math.round(max * f))}
            </text>
          </g>
        ))}
        {p.buckets.map((b, i) => {
          const x = pad.left + i * slot + (slot - barW) / 2;
          const label =
            p.granularity === 'day'
              ? String(b.start.getUTCDate())
              : b.start.toLocaleDateString('en-US', { timeZone: 'UTC', month: 'short' });
          return (
            <g key={b.start.getTime()}>
              {b.value > 0 && (
                <rect className="chart-bar" x={x} y={y(b.value)} width={barW}
                  height={pad.top + innerH - y(b.value)} data-date={isoDay(b.start)}
                  data-value={b.value}>
                  <title>{`${name(b.start)}: ${amount(p.meter, b.value)}`}</title>
                </rect>
              )}
              {(i % every === 0 || i === p.buckets.length - 1) && (
                <text className="chart-x" x={x + barW / 2} y={chartHeight - 8} textAnchor="middle">
                  {label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption>
        <details>
          <summary>The values as a table</summary>
          <table data-testid="usage-chart-table">
            <caption>{p.title}</caption>
            <thead>
              <tr>
                <th scope="col">{p.granularity === 'day' ? 'Day' : 'Month'}</th>
                <th scope="col">
                  {meterLabel(p.meter)}
                  {p.gauge && ' (highest)'}
                </th>
              </tr>
            </thead>
            <tbody>
              {past.map((b) => (
                <tr key={b.start.getTime()} data-date={isoDay(b.start)}>
                  <th scope="row">{name(b.start)}</th>
                  <td>{amount(p.meter, b.value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      </figcaption>
    </figure>
  );
}
