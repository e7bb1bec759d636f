// The rate-limit dashboard (HSEA-035) for owners and admins, the roles GET /api/rate-limits/report
// allows: for the chosen window, the requests the limits saw and refused in total and per rule
// and key kind, the tenant's API rate, and the times the anomaly detector flagged its request
// rate. The report counts whole hours (the window starts at the top of the hour) and brings this
// node's counts up to date before it answers.
import { useCallback, useEffect, useId, useState } from 'react';
import { api, ApiError } from '../api';
import { currentRole, useSession } from '../session';
import { ItemTable, Page, ProblemSummary, Section } from '../ui';
import { count, percent, utcDateTime } from './usage';

interface RateLimitReport {
  hours: number;
  limited: number;
  limit: {
    rule: string;
    requests: number;
    period_seconds: number;
    burst: number;
    source: 'route' | 'plan' | 'default' | 'override';
  };
  data: { hour: string; rule: string; key: string; limited: number; requests: number }[];
  anomalies: { at: string; rate_per_second: number; baseline_per_second: number }[];
}

interface RuleRow {
  rule: string;
  key: string;
  requests: number;
  limited: number;
}

// The roles GET /api/rate-limits/report allows (src/ratelimit/routes.cpp).
const seesRateLimits = (role: string) => ['owner', 'admin'].includes(role);

const windows = [
  { hours: 1, label: 'Last hour' },
  { hours: 24, label: 'Last 24 hours' },
  { hours: 24 * 7, label: 'Last 7 days' },
];

const ruleLabels: Record<string, string> = {
  api: 'API requests',
  'rate_limits.report': 'Rate-limit reports',
};
const keyLabels: Record<string, string> = {
  tenant: 'Organization',
  user: 'User',
  api_key: 'API key',
  ip: 'Address',
};
const sourceLabels: Record<string, string> = {
  route: 'set by the route',
  plan: 'from your plan',
  default: 'the default',
  override: 'set for your organization by the operator',
};

const perSecond = (n: number) =>
  `${n.toLocaleString('en-US', { maximumFractionDigits: 1 })} requests/s`;
// "1 request per second", "100 requests per 60 seconds".
const rate = (requests: number, seconds: number) =>
  `${count(requests)} ${requests === 1 ? 'request' : 'requests'} per ${
    seconds === 1 ? 'second' : `${count(seconds)} seconds`}`;
const share = (limited: number, requests: number) => (requests ? limited / requests : 0);

// The hourly rows summed per rule and key kind, most refused first.
function byRule(data: RateLimitReport['data']): RuleRow[] {
  const rows = new Map<string, RuleRow>();
  for (const d of data) {
    const k = `${d.rule}\n${d.key}`;
    const row = rows.get(k) ?? { rule: d.rule, key: d.key, requests: 0, limited: 0 };
    row.requests += d.requests;
    row.limited += d.limited;
    rows.set(k, row);
  }
  return [...rows.values()].sort(
    (a, b) => b.limited - a.limited || b.requests - a.requests || a.rule.localeCompare(b.rule),
  );
}

export function RateLimits() {
  const { me } = useSession();
  const allowed = seesRateLimits(currentRole(me) ?? '');
  const [hours, setHours] = useState(24);
  const [report, setReport] = useState<RateLimitReport | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const selectId = useId();

  const load = useCallback(async (h: number) => {
    setLoading(true);
    setError(null);
    try {
      setReport(await api<RateLimitReport>('GET', `/api/rate-limits/report?hours=${h}`));
    } catch (e) {
      setReport(null);
      setError(e instanceof ApiError ? e : new ApiError(0, { title: String(e) }));
    } finally {
      setLoading(false);
    }
  }, []);
  useEffect(() => {
    if (allowed) void load(hours);
  }, [allowed, hours, load]);

  if (!allowed) {
    return (
      <Page title="Rate limits">
        <p data-testid="rate-limits-not-allowed">
          Only owners and admins of your organization can see its rate-limit reports.
        </p>
      </Page>
    );
  }
  const shown = report && report.hours === hours ? report : null;
  return (
    <Page title="Rate limits">
      <div className="field chart-meter">
        <label htmlFor={selectId}>Period</label>
        <select id={selectId} value={hours} onChange={(e) => setHours(Number(e.target.value))}>
          {windows.map((w) => (
            <option key={w.hours} value={w.hours}>
              {w.label}
            </option>
          ))}
        </select>
      </div>
      {loading && !shown && (
        <p role="status" aria-busy="true">
          Loading the report…
        </p>
      )}
      {error && (
        <>
          <ProblemSummary error={error} />
          <button type="button" onClick={() => void load(hours)} disabled={loading}>
            Try again
          </button>
        </>
      )}
      {shown && <Report report={shown} />}
    </Page>
  );
}

function Report({ report }: { report: RateLimitReport }) {
  const rows = byRule(report.data);
  const requests = rows.reduce((s, r) => s + r.requests, 0);
  const { limit } = report;
  return (
    <>
      <dl className="period" data-testid="rate-limit-rate">
        <div>
          <dt>Your API rate</dt>
          <dd>
            {`${rate(limit.requests, limit.period_seconds)}, up to ${count(limit.burst)} at ` +
              `once (${sourceLabels[limit.source] ?? limit.source})`}
          </dd>
        </div>
      </dl>
      <Section title="Requests and refusals">
        {rows.length === 0 ? (
          <p data-testid="rate-limits-empty">
            No requests were counted in this period.
          </p>
        ) : (
          <>
            <dl className="period" data-testid="rate-limit-totals">
              <div>
                <dt>Requests</dt>
                <dd data-testid="total-requests">{count(requests)}</dd>
              </div>
              <div>
                <dt>Refused (429)</dt>
                <dd data-testid="total-limited">{count(report.limited)}</dd>
              </div>
              <div>
                <dt>Share refused</dt>
                <dd data-testid="total-share">{percent(share(report.limited, requests))}</dd>
              </div>
            </dl>
            <ItemTable
              caption="Requests and refusals per rule and key"
              columns={['Rule', 'Counted per', 'Requests', 'Refused', 'Share refused']}
              items={rows}
              row={(r) => <RuleLine key={`${r.rule}\n${r.key}`} r={r} />}
            />
          </>
        )}
      </Section>
      <Section title="Unusual request rates">
        <ItemTable
          caption="Times the request rate left its usual level"
          columns={['Time', 'Rate', 'Usual rate']}
          items={[...report.anomalies].reverse()}
          empty="No unusual request rates were detected in this period."
          row={(a) => (
            <tr key={a.at + a.rate_per_second} data-testid="anomaly">
              <th scope="row">{utcDateTime(a.at)}</th>
              <td>{perSecond(a.rate_per_second)}</td>
              <td>{perSecond(a.baseline_per_second)}</td>
            </tr>
          )}
        />
      </Section>
      <p className="hint">
        Counted in whole hours: the period begins at the start of the hour. Unusual rates are
        kept in memory by the server that answers, so a restart forgets them.
      </p>
    </>
  );
}

function RuleLine({ r }: { r: RuleRow }) {
  const s = share(r.limited, r.requests);
  return (
    <tr data-testid={`rule-${r.rule}-${r.key}`}>
      <th scope="row" className="rule">
        {ruleLabels[r.rule] ?? r.rule} <code className="muted">{r.rule}</code>
      </th>
      <td>{keyLabels[r.key] ?? r.key}</td>
      <td data-testid="requests">{count(r.requests)}</td>
      <td data-testid="limited">{count(r.limited)}</td>
      <td>
        <div className="usage-share">
          {/* The bar repeats the percentage beside it, so it is hidden from screen readers. */}
          <div className={`usage-bar usage-${r.limited > 0 ? 'exceeded' : 'ok'}`} aria-hidden="true">
            <div className="usage-fill" style={{ width: `${s * 100}%` }} />
          </div>
          <span data-testid="share">{percent(s)}</span>
        </div>
      </td>
    </tr>
  );
}
