// The cookie session's CSRF token rotating on refresh (branch cors-csrf): the page reads the
// new token from the hsea_csrf cookie for its next unsafe request, and the old one is refused.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkPage, fill, launch, newPage, signIn, signUpByApi } from '../lib.mjs';

async function csrfCookie(page) {
  const cookies = await page.context().cookies();
  return cookies.find((c) => c.name === 'hsea_csrf')?.value;
}

describe('CSRF token rotation', () => {
  let browser;
  let page;
  let user;

  before(async () => {
    browser = await launch();
    user = await signUpByApi('csrf');
    page = await newPage(browser);
    await signIn(page, user.email, user.password);
  });
  after(async () => {
    await browser?.close();
  });

  it('uses the rotated token after a refresh and the old one is refused', async () => {
    const before = await csrfCookie(page);
    assert.ok(before);
    const refreshed = await page.evaluate(async (token) => {
      const r = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
        body: '{}',
      });
      return { status: r.status, body: await r.json() };
    }, before);
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    const after = await csrfCookie(page);
    assert.notEqual(after, before);
    assert.equal(refreshed.body.csrf_token, after);

    // The page's next unsafe request carries the new token.
    await fill(page, 'Name', 'Renamed After Refresh');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    await checkPage(page, 'account-profile-saved-after-refresh');

    const stale = await page.evaluate(async (token) => {
      const r = await fetch('/api/me', {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
        body: JSON.stringify({ name: 'Stale Token' }),
      });
      return r.status;
    }, before);
    assert.equal(stale, 403);
  });
});
