// The web UI outliving its access: on a server whose access lasts five seconds
// (HSEA_ACCESS_TOKEN_SECONDS=5, started by run.mjs), the session cookie stops granting access,
// the page's next API call gets a 401, the page refreshes the session (POST /api/auth/refresh,
// which rotates the CSRF token and renews the cookie) and retries it, and the user stays
// signed in, for an unsafe request and for a reload alike.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkPage, fill, launch, newPage, shortAccessUrl, signIn, signUpByApi, sql,
} from '../lib.mjs';

const kAccessSeconds = 5;

async function csrfCookie(page) {
  const cookies = await page.context().cookies();
  return cookies.find((c) => c.name === 'hsea_csrf')?.value;
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('access expiry in the browser', () => {
  let browser;
  let page;
  let user;
  const calls = [];

  before(async () => {
    assert.ok(shortAccessUrl, 'run.mjs starts the short-access server');
    browser = await launch();
    user = await signUpByApi('expiry');
    page = await newPage(browser, shortAccessUrl);
    page.on('response', (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith('/api/')) {
        calls.push(`${r.request().method()} ${url.pathname} ${r.status()}`);
      }
    });
    await signIn(page, user.email, user.password);
  });
  after(async () => {
    await browser?.close();
  });

  it('refreshes on the 401 and retries an unsafe request, with a new CSRF token', async () => {
    const before = await csrfCookie(page);
    assert.ok(before);
    await wait((kAccessSeconds + 1.5) * 1000);
    calls.length = 0;
    await fill(page, 'Name', 'After Expiry');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    const relevant = calls.filter((c) => /^(PATCH \/api\/me|POST \/api\/auth\/refresh) /.test(c));
    assert.deepEqual(relevant, ['PATCH /api/me 401', 'POST /api/auth/refresh 200',
      'PATCH /api/me 200'], calls.join('\n'));
    const after = await csrfCookie(page);
    assert.ok(after);
    assert.notEqual(after, before, 'the refresh rotates the CSRF token');
    // The old token is refused at once (the session's generation moved on; the renewed cookie
    // still grants access).
    const stale = await page.evaluate(async (token) => {
      const r = await fetch('/api/me', {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
        body: JSON.stringify({ name: 'Stale Token' }),
      });
      return r.status;
    }, before);
    assert.equal(stale, 403);
    await checkPage(page, 'access-expiry-saved-after-refresh');
  });

  it('stays signed in across a reload after the access expired', async () => {
    await wait((kAccessSeconds + 1.5) * 1000);
    calls.length = 0;
    await page.reload();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    await page.waitForLoadState('networkidle');
    assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'After Expiry');
    assert.ok(calls.includes('POST /api/auth/refresh 200'), calls.join('\n'));
    assert.ok(calls.indexOf('GET /api/me 401') < calls.indexOf('POST /api/auth/refresh 200'),
      calls.join('\n'));
    assert.ok(calls.lastIndexOf('GET /api/me 200') > calls.indexOf('POST /api/auth/refresh 200'),
      calls.join('\n'));
    await checkPage(page, 'access-expiry-reloaded-still-signed-in');
  });

  it('signs out when the session itself has ended, refresh or not', async () => {
    // Test setup: the session is revoked (as signing out elsewhere does); the refresh on the
    // next 401 fails too, and the page shows the sign-in form.
    sql(`UPDATE sessions SET revoked_at = now() WHERE user_id = '${user.userId}'`);
    await wait((kAccessSeconds + 1.5) * 1000);
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  });
});
