// The rate-limit dashboard (HSEA-035): a tenant refused for real (an operator's low override of
// its `api` rule, set through the staff API, then a burst of API calls) sees on
// /account/rate-limits the requests and refusals the spec counted, in total and on the rule's
// row, for each window; another tenant sees none of them; a member has no link and is told the
// page is not for them; a tenant whose request rate jumps sees the anomaly detector's finding.
// The report brings the counts up to date itself (it flushes before reading); run.mjs sets
// HSEA_RATE_LIMIT_FLUSH_SECONDS=1, so the detector observes every second.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  apiCall, checkPage, invitee, launch, newPage, signIn, signUpByApi, sql,
} from '../lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const number = (text) => Number(text.replace(/,/g, ''));
const bearer = (who) => ({ Authorization: `Bearer ${who.token}` });
const oneDecimal = (n) => n.toLocaleString('en-US', { maximumFractionDigits: 1 });

async function report(who) {
  const r = await apiCall('GET', '/api/rate-limits/report?hours=1', undefined, bearer(who));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

async function openRateLimits(page) {
  await page.getByRole('navigation', { name: 'Account' })
    .getByRole('link', { name: 'Rate limits' }).click();
  await page.getByRole('heading', { name: 'Rate limits', level: 1 }).waitFor();
  await page.getByTestId('rate-limit-totals').waitFor();
}

describe('Rate-limit dashboard', () => {
  let browser;
  let owner;
  let other;
  let member;
  const sent = 40;
  let refused = 0;

  before(async () => {
    browser = await launch();
    let staff;
    [owner, other, staff] = await Promise.all(
      ['rl-a', 'rl-b', 'rl-staff'].map((tag) => signUpByApi(tag)));
    // Before the override: inviting is an API call of the tenant too.
    member = await invitee(owner, 'member', 'rl');
    // An operator (as tests/ratelimit_httptest.cpp makes one) sets A's API rate to 1 a second,
    // 5 at once.
    sql(`INSERT INTO platform_staff (user_id) VALUES ('${staff.userId}')`);
    const r = await apiCall('PUT', `/api/admin/rate-limits/overrides/${owner.tenant.id}/api`,
      { requests: 1, period_seconds: 1, burst: 5, note: 'e2e: the dashboard spec' }, bearer(staff));
    assert.equal(r.status, 200, JSON.stringify(r.body));

    for (let i = 0; i < sent; i++) {
      const call = await apiCall('GET', '/api/tenant', undefined, bearer(owner));
      if (call.status === 429) {
        assert.equal(call.body.code, 'rate_limited', JSON.stringify(call.body));
        refused++;
      } else {
        assert.equal(call.status, 200, JSON.stringify(call.body));
      }
    }
    assert.ok(refused >= sent / 2 && refused < sent, `refused ${refused} of ${sent}`);
    // Each I/O thread's counts reach the report within 2 s (merged, then flushed by the report).
    for (let i = 0; ; i++) {
      if ((await report(owner)).limited === refused) break;
      assert.ok(i < 8, `the report never counted ${refused} refused requests`);
      await sleep(1000);
    }
    // The bucket refills (5 s), so the pages' own calls are admitted.
    await sleep(5500);
  });
  after(async () => {
    await browser?.close();
  });

  it('shows the tenant its requests and refusals in total and per rule', async () => {
    const page = await newPage(browser);
    await signIn(page, owner.email, owner.password);
    await openRateLimits(page);
    assert.match(await page.getByTestId('rate-limit-rate').innerText(),
      /1 request per second, up to 5 at once \(set for your organization by the operator\)/);

    const check = async () => {
      const totals = page.getByTestId('rate-limit-totals');
      assert.equal(number(await totals.getByTestId('total-limited').innerText()), refused);
      const requests = number(await totals.getByTestId('total-requests').innerText());
      assert.ok(requests >= sent, `total requests ${requests} < ${sent} sent`);
      const share = await totals.getByTestId('total-share').innerText();
      assert.equal(share, `${oneDecimal(refused / requests * 100)}%`);
      // The rule's row: the calls the spec made (and the pages' own, a few), the refusals exactly.
      const row = page.getByTestId('rule-api-tenant');
      assert.match(await row.locator('th').innerText(), /API requests/);
      assert.equal(await row.locator('td').first().innerText(), 'Organization');
      assert.equal(number(await row.getByTestId('limited').innerText()), refused);
      const ruleRequests = number(await row.getByTestId('requests').innerText());
      assert.ok(ruleRequests >= sent && ruleRequests <= sent + 10,
        `api requests ${ruleRequests}, ${sent} sent`);
      assert.equal(await row.getByTestId('share').innerText(),
        `${oneDecimal(refused / ruleRequests * 100)}%`);
      // The report's own rule counts per user, none refused.
      const own = page.getByTestId('rule-rate_limits.report-user');
      assert.equal(number(await own.getByTestId('limited').innerText()), 0);
      assert.equal(await page.getByTestId('rate-limits-empty').count(), 0);
    };
    await check();
    await checkPage(page, 'rate-limits-owner');

    // The other windows count the same (everything happened within the hour).
    for (const label of ['Last hour', 'Last 7 days']) {
      const answered = page.waitForResponse((r) => r.url().includes('/api/rate-limits/report'));
      await page.getByLabel('Period').selectOption({ label });
      await answered;
      await page.getByTestId('rate-limit-totals').waitFor();
      await check();
    }
    await checkPage(page, 'rate-limits-owner-7-days');
  });

  it('shows another tenant only its own counts', async () => {
    const page = await newPage(browser);
    await signIn(page, other.email, other.password);
    await openRateLimits(page);
    assert.equal(await page.getByTestId('total-limited').innerText(), '0');
    const row = page.getByTestId('rule-api-tenant');
    if (await row.count()) assert.equal(await row.getByTestId('limited').innerText(), '0');
    assert.match(await page.getByTestId('rate-limit-rate').innerText(), /from your plan/);
    // A few requests a second at most: never flagged.
    await page.getByText('No unusual request rates were detected in this period.').waitFor();
    await checkPage(page, 'rate-limits-other-tenant');
  });

  it('lists the times the request rate left its usual level', async () => {
    const bursty = await signUpByApi('rl-d');
    // The detector's warm-up: five flushes at a calm rate (one request), then 300 requests at
    // once, far above it (refused or not, each is a request).
    await apiCall('GET', '/api/tenant', undefined, bearer(bursty));
    await sleep(8000);
    assert.deepEqual((await report(bursty)).anomalies, []);
    for (let i = 0; i < 300; i++) await apiCall('GET', '/api/tenant', undefined, bearer(bursty));
    let anomalies = [];
    for (let i = 0; anomalies.length === 0; i++) {
      assert.ok(i < 6, 'the detector never flagged the burst');
      await sleep(1500);
      anomalies = (await report(bursty)).anomalies;
    }
    const first = anomalies[0];
    assert.ok(first.rate_per_second >= 10 && first.baseline_per_second < first.rate_per_second,
      JSON.stringify(first));
    await sleep(4000); // the plan's bucket refills for the pages' own calls

    const page = await newPage(browser);
    await signIn(page, bursty.email, bursty.password);
    await openRateLimits(page);
    const rows = page.getByTestId('anomaly');
    assert.ok(await rows.count() >= anomalies.length);
    const when = `${new Date(first.at).toLocaleString('en-US', {
      timeZone: 'UTC', dateStyle: 'medium', timeStyle: 'short', hourCycle: 'h23',
    })} UTC`;
    const row = rows.filter({ hasText: `${oneDecimal(first.rate_per_second)} requests/s` })
      .filter({ hasText: when });
    assert.equal(await row.count(), 1, `no row for ${JSON.stringify(first)} (${when})`);
    assert.deepEqual(await row.locator('th, td').allInnerTexts(), [when,
      `${oneDecimal(first.rate_per_second)} requests/s`,
      `${oneDecimal(first.baseline_per_second)} requests/s`]);
    await checkPage(page, 'rate-limits-anomaly');
  });

  it('gives a member no link and a clear refusal at the address', async () => {
    const page = await newPage(browser);
    await signIn(page, member.email, member.password);
    const nav = page.getByRole('navigation', { name: 'Account' });
    await nav.getByRole('link', { name: 'Usage' }).waitFor();
    assert.equal(await nav.getByRole('link', { name: 'Rate limits' }).count(), 0);
    await page.goto('/account/rate-limits');
    await page.getByRole('heading', { name: 'Rate limits', level: 1 }).waitFor();
    assert.equal(await page.getByTestId('rate-limits-not-allowed').innerText(),
      'Only owners and admins of your organization can see its rate-limit reports.');
    assert.equal(await page.getByTestId('rate-limit-totals').count(), 0);
    await checkPage(page, 'rate-limits-member');
  });
});
