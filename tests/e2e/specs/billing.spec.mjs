// The billing portal against the Stripe emulator (tests/stripe-emulator): a first paid plan
// through Checkout, the invoice history with its PDF, an upgrade with the prorated amount shown
// before confirming, payment methods on Stripe's portal, a failed renewal's past-due banner and
// "Pay now"; another tenant sees none of it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiCall, checkPage, launch, newPage, signIn, signUpByApi } from '../lib.mjs';

const stripeUrl = process.env.HSEA_E2E_STRIPE_URL;

async function control(method, route, body) {
  const r = await fetch(`${stripeUrl}/_emulator${route}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(r.ok, `${method} ${route}: ${r.status} ${await r.text()}`);
  return r.json().catch(() => ({}));
}

// Gives the emulator's queued webhook deliveries time to arrive; the page checks below wait for
// their effects anyway.
async function webhooksIdle() {
  for (let i = 0; i < 50; i++) {
    const d = await control('GET', '/webhooks/deliveries');
    if (d.idle) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Reloads the billing page until `check` holds (webhooks are processed by the job worker).
async function until(page, check, what) {
  for (let i = 0; i < 60; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 500));
    await page.reload();
    await page.getByRole('heading', { name: 'Billing', level: 1 }).waitFor();
  }
  assert.fail(`the billing page never showed ${what}`);
}

describe('Billing portal', () => {
  let browser;
  let page;
  let pageB;
  let owner;
  let ownerB;

  before(async () => {
    browser = await launch();
    owner = await signUpByApi('billing-a');
    ownerB = await signUpByApi('billing-b');
    page = await newPage(browser);
    pageB = await newPage(browser);
    await signIn(page, owner.email, owner.password);
    await signIn(pageB, ownerB.email, ownerB.password);
  });
  after(async () => {
    await browser?.close();
  });

  it('subscribes through Checkout and lists the paid invoice with its PDF', async () => {
    await page.getByRole('link', { name: 'Billing' }).click();
    await page.getByRole('heading', { name: 'Billing', level: 1 }).waitFor();
    await page.getByTestId('current-plan').getByText('Free').waitFor();
    await page.getByText('No invoices yet.').waitFor();
    await checkPage(page, 'billing-free');

    await page.getByRole('button', { name: 'Upgrade to Starter' }).click();
    await page.getByTestId('plan-change').getByText(/through Stripe Checkout/).waitFor();
    await page.getByRole('button', { name: 'Confirm upgrade' }).click();
    // The emulator's Checkout page pays with a test card and sends the browser back.
    await page.waitForURL(/\/account\/billing\?checkout=done/);
    await webhooksIdle();
    await until(page, async () =>
      (await page.getByTestId('current-plan').innerText()).includes('Starter'), 'Starter');
    await until(page, async () =>
      (await page.getByRole('cell', { name: 'paid', exact: true }).count()) === 1, 'the invoice');
    await checkPage(page, 'billing-starter');

    const href = await page.getByRole('link', { name: /^Download PDF/ }).getAttribute('href');
    const pdf = await page.request.get(href);
    assert.equal(pdf.status(), 200);
    assert.equal(pdf.headers()['content-type'], 'application/pdf');
    assert.equal((await pdf.body()).subarray(0, 5).toString(), '%PDF-');

    // The other tenant: no invoices, and A's PDF is not found.
    await pageB.goto('/account/billing');
    await pageB.getByText('No invoices yet.').waitFor();
    const theirs = await pageB.request.get(href);
    assert.equal(theirs.status(), 404);
  });

  it('shows the prorated amount before an upgrade and applies it', async () => {
    await page.getByRole('button', { name: 'Upgrade to Pro' }).click();
    const proration = page.getByTestId('proration');
    await proration.waitFor();
    assert.match(await proration.innerText(), /Due now, prorated for the rest of this period: \$/);
    await checkPage(page, 'billing-upgrade-preview');
    await page.getByRole('button', { name: 'Confirm upgrade' }).click();
    await page.getByRole('status').getByText('You are now on Pro.').waitFor();
    await webhooksIdle();
    await until(page, async () =>
      (await page.getByTestId('current-plan').innerText()).includes('Pro'), 'Pro');
  });

  it('opens Stripe\'s portal for payment methods', async () => {
    await page.getByRole('button', { name: 'Manage payment methods' }).click();
    await page.waitForURL((url) => url.toString().startsWith(stripeUrl));
    await page.goto('/account/billing');
    await page.getByRole('heading', { name: 'Billing', level: 1 }).waitFor();
  });

  it('shows the past-due banner after a failed renewal and pays now', async () => {
    const current = await apiCall('GET', '/api/subscriptions/current', undefined,
      { Authorization: `Bearer ${owner.token}` });
    assert.equal(current.status, 200, JSON.stringify(current.body));
    const customer = current.body.stripe_customer_id;
    await control('POST', `/customers/${customer}/charges`, { outcome: 'fail', count: 1 });
    await control('POST', '/time/advance', { seconds: 32 * 86400 });
    await webhooksIdle();
    const banner = page.getByTestId('past-due-banner');
    await until(page, async () => (await banner.count()) === 1, 'the past-due banner');
    await checkPage(page, 'billing-past-due');

    await control('POST', `/customers/${customer}/charges`, { outcome: 'succeed' });
    await page.getByRole('button', { name: 'Pay now' }).click();
    await page.getByRole('status').getByText('Thank you: the invoice is paid.').waitFor();
    await webhooksIdle();
    await until(page, async () => (await banner.count()) === 0, 'no banner');
    await checkPage(page, 'billing-paid-again');
  });
});
