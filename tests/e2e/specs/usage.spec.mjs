// The usage dashboard (HSEA-029's usage part, over HSEA-026/027): a tenant's API calls made with
// an API key and its product events (POST /api/usage/events) appear per meter against the plan's
// limits, and the product meter's days as chart bars (values as tooltips and as a table); a tenant
// past the soft threshold of its api_calls quota (an operator's override, `hsea usage quota`)
// sees the warning, a meter past its quota the exceeded state, and the way to upgrade; a member
// sees usage without the upgrade, the billing role none; each tenant sees only its own usage; a
// Pro tenant past the API calls included in its plan sees them billed per use (the overage), not
// a warning nor an upgrade, and its storage as a current value charted by its daily highest.
// run.mjs runs the server with HSEA_METERING_ROLLUP_SECONDS=2, so the rollups come within
// seconds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import {
  apiCall, checkPage, invitee, launch, newPage, signIn, signUpByApi, sql,
} from '../lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// An API call that waits out the free plan's rate limit (5 a second after a burst of 20): the
// spec makes more calls than the burst, and a refused call is not usage.
async function call(method, route, key, body) {
  for (let i = 0; i < 50; i++) {
    const r = await apiCall(method, route, body, { Authorization: `Bearer ${key}` });
    if (r.status !== 429 || r.body.code !== 'rate_limited') return r;
    await sleep(250);
  }
  assert.fail(`${method} ${route} stayed rate limited`);
}

async function apiKey(owner) {
  const r = await apiCall('POST', '/api/api-keys',
    { name: 'usage e2e', scopes: ['tenant:read', 'usage:read', 'usage:write'] },
    { Authorization: `Bearer ${owner.token}` });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.key;
}

async function apiCalls(key, n) {
  for (let i = 0; i < n; i++) {
    const r = await call('GET', '/api/tenant', key);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
}

async function summary(key) {
  const r = await call('GET', '/api/usage/summary', key);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}
const meterOf = (s, meter) => s.meters.find((m) => m.meter === meter);

// Waits until the tenant's summary counts at least `n` API calls (each I/O thread writes its
// count every second).
async function apiCallsCounted(key, n) {
  for (let i = 0; i < 50; i++) {
    if (meterOf(await summary(key), 'api_calls').used >= n) return;
    await sleep(200);
  }
  assert.fail(`the summary never counted ${n} api_calls`);
}

// The operator's enterprise override of one tenant's quota.
function setQuota(tenantId, meter, quota) {
  const db = process.env.HSEA_E2E_DATABASE_ADMIN_URL;
  const r = spawnSync(process.env.HSEA_BINARY,
    ['usage', 'quota', '--tenant', tenantId, '--meter', meter, '--quota', String(quota)],
    {
      env: { ...process.env, HSEA_DATABASE_ADMIN_URL: db, HSEA_DATABASE_URL: db },
      encoding: 'utf8',
    });
  assert.equal(r.status, 0, `hsea usage quota: ${r.stdout}${r.stderr}`);
}

const number = (text) => Number(text.replace(/,/g, ''));

async function openUsage(page) {
  await page.goto('/account/usage');
  await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor();
  await page.getByTestId('usage-period').waitFor();
}

// Waits until the rollups (GET /api/usage, the chart's source, brought up to date by a job
// every few seconds here) hold `check` for the meter's days, read through the API so the page is
// loaded once.
async function rolledUp(key, meter, check, what) {
  for (let i = 0; i < 60; i++) {
    const r = await call('GET', `/api/usage?meter=${meter}&granularity=day`, key);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (check(new Map(r.body.data.map((p) => [p.period_start.slice(0, 10), p.quantity])))) return;
    await sleep(500);
  }
  assert.fail(`the rollups never showed ${what}`);
}

describe('Usage dashboard', () => {
  let browser;
  let ownerA;
  let ownerB;
  let keyA;
  let keyB;
  let periodStart;
  const days = []; // { date: 'YYYY-MM-DD', quantity } of tenant A's product events
  let productTotal = 0;

  before(async () => {
    browser = await launch();
    [ownerA, ownerB] = await Promise.all([signUpByApi('usage-a'), signUpByApi('usage-b')]);
    [keyA, keyB] = await Promise.all([apiKey(ownerA), apiKey(ownerB)]);

    // Tenant A: 15 API calls and a product meter on up to three days of this period (late
    // events within the accepted window), recorded twice: the repeat changes nothing.
    await apiCalls(keyA, 15);
    periodStart = new Date((await summary(keyA)).period.start).getTime();
    const quantities = [1000000, 200000, 34567];
    const events = [];
    quantities.forEach((quantity, back) => {
      const at = new Date(Date.now() - back * 86400 * 1000 - 60 * 1000);
      if (at.getTime() < periodStart) return;
      events.push({ meter: 'reports.generated', quantity, timestamp: at.toISOString(),
        idempotency_key: `report-day-${back}` });
      const date = at.toISOString().slice(0, 10);
      const day = days.find((d) => d.date === date); // just after midnight two share a day
      if (day) day.quantity += quantity;
      else days.push({ date, quantity });
      productTotal += quantity;
    });
    let r = await call('POST', '/api/usage/events', keyA, { events });
    assert.deepEqual(r.body, { accepted: events.length, duplicates: 0 });
    r = await call('POST', '/api/usage/events', keyA, { events });
    assert.deepEqual(r.body, { accepted: 0, duplicates: events.length });

    // Tenant B: an api_calls quota of 60 (soft threshold 80%: 48), 48 calls and the key's
    // creation; and a product meter over its quota of 10. (The quota leaves room for the pages'
    // own calls: past it, GET /api/me is refused too.)
    setQuota(ownerB.tenant.id, 'api_calls', 60);
    setQuota(ownerB.tenant.id, 'exports', 10);
    await apiCalls(keyB, 48);
    r = await call('POST', '/api/usage/events', keyB, { meter: 'exports', quantity: 12 });
    assert.equal(r.status, 200, JSON.stringify(r.body));

    // Both keys were made with the owners' tokens: one metered call each.
    await Promise.all([apiCallsCounted(keyA, 16), apiCallsCounted(keyB, 49)]);
  });
  after(async () => {
    await browser?.close();
  });

  it('shows the period, each meter against the plan and the product meter by day', async () => {
    const page = await newPage(browser);
    await signIn(page, ownerA.email, ownerA.password);
    await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Usage' })
      .click();
    await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor();
    const period = page.getByTestId('usage-period');
    await period.waitFor();
    assert.match(await period.innerText(),
      /Billing period\s+\w{3} \d+, \d{4} – \w{3} \d+, \d{4}/);
    assert.match(await period.innerText(), /Usage resets\s+.+ UTC \(in \d+ (min|h|days)\)/);

    const row = (meter) => page.getByTestId(`meter-${meter}`);
    const cell = (meter, id) => row(meter).getByTestId(id).innerText();
    // The calls made with the key and the key's creation, plus the page's own (GET /api/me).
    const used = number(await cell('api_calls', 'used'));
    assert.ok(used >= 16 && used <= 26, `api_calls used ${used}`);
    assert.equal(await cell('api_calls', 'limit'), '10,000');
    assert.equal(await cell('api_calls', 'state'), 'Within limit');
    assert.equal(await cell('reports.generated', 'used'), productTotal.toLocaleString('en-US'));
    assert.equal(await cell('reports.generated', 'limit'), 'Unlimited');
    assert.equal(await cell('seats', 'used'), '1');
    assert.equal(await cell('seats', 'limit'), '3');
    assert.equal(await cell('storage_bytes', 'used'), '0 B');
    assert.equal(await cell('storage_bytes', 'limit'), '1 GiB');
    assert.equal(await page.getByTestId('usage-limit-banner').count(), 0);
    // Tenant B's product meter is not A's.
    assert.equal(await row('exports').count(), 0);

    // The chart: one bar per day with events, its value as the tooltip and in the table.
    await rolledUp(keyA, 'reports.generated',
      (by) => days.every((d) => by.get(d.date) === d.quantity), 'the product events');
    await page.reload();
    await page.getByLabel('Meter').selectOption('reports.generated');
    await page.getByTestId('usage-chart').waitFor();
    assert.equal(await page.locator('rect.chart-bar').count(), days.length);
    for (const d of days) {
      const bar = page.locator(`rect.chart-bar[data-date="${d.date}"]`);
      assert.equal(await bar.getAttribute('data-value'), String(d.quantity));
      assert.match(await bar.locator('title').textContent(),
        new RegExp(`: ${d.quantity.toLocaleString('en-US')}$`));
    }
    // The tallest bar is the largest day's.
    const heights = await page.locator('rect.chart-bar').evaluateAll((rs) =>
      rs.map((r) => [r.dataset.value, Number(r.getAttribute('height'))]));
    const tallest = heights.reduce((a, b) => (b[1] > a[1] ? b : a));
    assert.equal(Number(tallest[0]), Math.max(...days.map((d) => d.quantity)));
    await page.getByText('The values as a table').click();
    const table = page.getByTestId('usage-chart-table');
    for (const d of days) {
      assert.equal(await table.locator(`tr[data-date="${d.date}"] td`).innerText(),
        d.quantity.toLocaleString('en-US'));
    }
    const listed = await table.locator('tbody tr td').allInnerTexts();
    assert.equal(listed.map(number).reduce((a, b) => a + b, 0), productTotal);
    await checkPage(page, 'usage-product-chart');

    // The API calls' chart: today's bar holds the calls counted so far.
    const today = new Date().toISOString().slice(0, 10);
    await rolledUp(keyA, 'api_calls', (by) => by.get(today) >= 16, 'today\'s API calls');
    await page.getByLabel('Meter').selectOption('api_calls');
    const bar = page.locator(`rect.chart-bar[data-date="${today}"]`);
    await bar.waitFor();
    assert.ok(Number(await bar.getAttribute('data-value')) >= 16);
    await checkPage(page, 'usage-api-calls');
  });

  it('shows a tenant past its soft threshold the warning, the exceeded meter and the upgrade',
    async () => {
      const page = await newPage(browser);
      await signIn(page, ownerB.email, ownerB.password);
      await openUsage(page);
      const row = (meter) => page.getByTestId(`meter-${meter}`);
      const cell = (meter, id) => row(meter).getByTestId(id).innerText();
      assert.equal(await row('api_calls').getAttribute('data-state'), 'warning');
      assert.equal(await cell('api_calls', 'state'), 'Warning: near the limit');
      assert.equal(await cell('api_calls', 'limit'), '60');
      // Only B's own calls: A's are not counted here.
      const used = number(await cell('api_calls', 'used'));
      assert.ok(used >= 49 && used < 60, `api_calls used ${used}`);
      assert.equal(await row('exports').getAttribute('data-state'), 'exceeded');
      assert.equal(await cell('exports', 'used'), '12');
      assert.equal(await cell('exports', 'state'), 'Over the limit');
      assert.equal(await row('reports.generated').count(), 0);
      const banner = page.getByTestId('usage-limit-banner');
      assert.match(await banner.innerText(), /Limit reached: exports\./);
      assert.match(await banner.innerText(), /Near the limit: API calls passed the warning/);
      // Storage has no events: the chart says so.
      await page.getByLabel('Meter').selectOption('storage_bytes');
      await page.getByTestId('usage-chart-empty').waitFor();
      assert.equal(await page.getByTestId('usage-chart-empty').innerText(),
        'Nothing recorded for Storage in this period yet.');
      await checkPage(page, 'usage-warning');

      await banner.getByRole('link', { name: 'Upgrade your plan for higher limits' }).click();
      await page.getByRole('heading', { name: 'Billing', level: 1 }).waitFor();
      await page.getByTestId('current-plan').getByText('Free').waitFor();
    });

  it('shows a member the usage without the upgrade, and the billing role no usage', async () => {
    // Tenant C: a product meter over its quota, a member and a billing user.
    const ownerC = await signUpByApi('usage-c');
    setQuota(ownerC.tenant.id, 'exports', 10);
    const r = await call('POST', '/api/usage/events', await apiKey(ownerC),
      { meter: 'exports', quantity: 11 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [member, billing] = await Promise.all([invitee(ownerC, 'member', 'usage'),
      invitee(ownerC, 'billing', 'usage')]);
    const page = await newPage(browser);
    await signIn(page, member.email, member.password);
    await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Usage' })
      .click();
    const banner = page.getByTestId('usage-limit-banner');
    await banner.waitFor();
    assert.match(await banner.innerText(), /An owner of your organization can upgrade the plan/);
    // The free plan's 3 seats are taken: reached, not over; the product meter is past its quota.
    const state = (meter) => page.getByTestId(`meter-${meter}`).getByTestId('state').innerText();
    assert.equal(await state('seats'), 'Limit reached');
    assert.equal(await state('exports'), 'Over the limit');
    assert.equal(await banner.getByRole('link').count(), 0);
    await checkPage(page, 'usage-member');

    // The billing role reads no usage: no link, and the address answers the API's problem.
    const other = await newPage(browser);
    await signIn(other, billing.email, billing.password);
    const nav = other.getByRole('navigation', { name: 'Account' });
    await nav.getByRole('link', { name: 'Billing' }).waitFor();
    assert.equal(await nav.getByRole('link', { name: 'Usage' }).count(), 0);
    await other.goto('/account/usage');
    await other.getByRole('alert').waitFor();
    assert.match(await other.getByRole('alert').innerText(), /forbidden|permission|role/i);
    await other.getByRole('button', { name: 'Try again' }).waitFor();
    assert.equal(await other.getByTestId('usage-period').count(), 0);
    await checkPage(other, 'usage-forbidden');
  });

  it('shows a Pro tenant past its included API calls the billed use, not a warning', async () => {
    // Tenant D on Pro (as Stripe's webhook would leave it), whose api_calls are billed by usage:
    // 20 included (the operator's override, for a short spec), 25 calls and the key's creation.
    const ownerD = await signUpByApi('usage-pro');
    sql(`UPDATE subscriptions SET plan_id = 'pro', status = 'active' WHERE tenant_id = '${
      ownerD.tenant.id}'`);
    setQuota(ownerD.tenant.id, 'api_calls', 20);
    const keyD = await apiKey(ownerD);
    await apiCalls(keyD, 25); // never refused: past 20 they are billed
    await apiCallsCounted(keyD, 26);
    const api = meterOf(await summary(keyD), 'api_calls');
    assert.equal(api.metered, true, JSON.stringify(api));
    assert.equal(api.kind, 'counter');
    // Storage is a gauge: two measurements today, 3,000,000 then 5,000,000 bytes. The page
    // shows the current value and the chart the day's highest, never their sum.
    sql(`INSERT INTO usage_gauges (tenant_id, meter, value) VALUES ('${ownerD.tenant.id}', `
      + '\'storage_bytes\', 5000000)');
    sql('INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at) VALUES '
      + `('${ownerD.tenant.id}', uuid_v7(), 'storage_bytes', 3000000, now()), `
      + `('${ownerD.tenant.id}', uuid_v7(), 'storage_bytes', 5000000, now())`);
    const today = new Date().toISOString().slice(0, 10);
    await rolledUp(keyD, 'storage_bytes', (by) => by.get(today) === 5000000,
      'the day\'s highest storage');

    const page = await newPage(browser);
    await signIn(page, ownerD.email, ownerD.password);
    await openUsage(page);
    const row = (meter) => page.getByTestId(`meter-${meter}`);
    const cell = (meter, id) => row(meter).getByTestId(id).innerText();
    assert.equal(await row('api_calls').getAttribute('data-state'), 'billed');
    assert.equal(await cell('api_calls', 'state'), 'Billed per use');
    assert.match(await row('api_calls').innerText(),
      /Billed per use · \d+ beyond the included amount/);
    assert.equal(await cell('api_calls', 'limit'), '20');
    assert.match(await row('api_calls').innerText(), /20 included/);
    const used = number(await cell('api_calls', 'used'));
    assert.ok(used >= 26 && used <= 36, `api_calls used ${used}`);
    // The overage is the summary's (used beyond the included 20), not "near the limit".
    const overage = number(await cell('api_calls', 'overage'));
    assert.ok(overage >= 6 && overage <= used - 20, `overage ${overage} of ${used}`);
    assert.doesNotMatch(await row('api_calls').innerText(), /near the limit|left/i);
    const banner = page.getByTestId('usage-limit-banner');
    const text = await banner.innerText();
    assert.match(text,
      new RegExp(`Billed per use: API calls went ${overage} beyond the 20 included`));
    assert.doesNotMatch(text, /Near the limit|Limit reached|upgrade/i);
    assert.equal(await banner.getByRole('link').count(), 0);

    assert.equal(await row('storage_bytes').getAttribute('data-kind'), 'gauge');
    assert.equal(await cell('storage_bytes', 'used'), '4.8 MiB');
    assert.match(await row('storage_bytes').innerText(), /4\.8 MiB now/);
    await page.getByLabel('Meter').selectOption('storage_bytes');
    const chart = page.getByTestId('usage-chart');
    await chart.waitFor();
    assert.equal(await page.locator(`rect.chart-bar[data-date="${today}"]`)
      .getAttribute('data-value'), '5000000');
    assert.match(await chart.locator('title').first().textContent(), /^Storage, highest per day/);
    const desc = await chart.locator('desc').textContent();
    assert.match(desc, /^Highest 4\.8 MiB on /);
    assert.doesNotMatch(desc, /Total/);
    await page.getByText('The values as a table').click();
    assert.equal(await page.getByTestId('usage-chart-table').locator('thead th').nth(1).innerText(),
      'Storage (highest)');
    await checkPage(page, 'usage-billed');
  });
});
