// What every spec uses: Debian's chromium through playwright-core, a screenshot and an axe
// check of every page, the mail the SMTP sink received, TOTP codes, unique accounts.
import AxeBuilder from '@axe-core/playwright';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const baseUrl = process.env.HSEA_E2E_URL;
// The same database served with HSEA_ACCESS_TOKEN_SECONDS=5 (run.mjs): access expires quickly.
export const shortAccessUrl = process.env.HSEA_E2E_SHORT_ACCESS_URL;
const output = process.env.HSEA_E2E_OUTPUT;
const mailFile = process.env.HSEA_E2E_MAIL_FILE;
if (!baseUrl || !output || !mailFile) {
  throw new Error('run the specs through tests/e2e/run.mjs (CTest e2e.web)');
}

export async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // As root (CI containers) chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

// A fresh browser context (its own cookies) and page on the server (or another, `url`); browser
// console errors and failed same-origin requests other than expected API answers are recorded.
export async function newPage(browser, url = baseUrl) {
  const context = await browser.newContext({ baseURL: url, viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.consoleErrors = [];
  page.on('console', (m) => {
    // A refused API call is logged by chromium as a failed resource: the page shows those.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) {
      page.consoleErrors.push(m.text());
    }
  });
  page.on('pageerror', (e) => page.consoleErrors.push(String(e)));
  return page;
}

const shots = new Set();
// A screenshot into build/e2e-output/screenshots/NAME.png, and axe-core with no serious or
// critical violation (WCAG 2.1 A and AA rules and best practices).
export async function checkPage(page, name) {
  await page.waitForLoadState('networkidle');
  assert.ok(!shots.has(name), `screenshot name ${name} used twice`);
  shots.add(name);
  await page.screenshot({ path: path.join(output, 'screenshots', `${name}.png`), fullPage: true });
  const result = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'])
    .analyze();
  const bad = result.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target).join(' ')}`),
    [],
    `axe on ${name} (${page.url()})`,
  );
  assert.deepEqual(page.consoleErrors, [], `browser errors on ${name}`);
}

export function uniqueEmail(tag) {
  return `${tag}-${randomBytes(4).toString('hex')}@e2e.hsea.test`;
}
export const strongPassword = () => `Correct-Horse-${randomBytes(6).toString('hex')}`;

function mails() {
  if (!fs.existsSync(mailFile)) return [];
  return fs.readFileSync(mailFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((m) => !m.refused);
}

// Waits for the count-th mail to `to` whose subject matches, as the sink received it.
export async function waitForMail(to, subject = /./, count = 1, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = mails().filter((m) => m.rcpt_to.includes(to) && subject.test(m.subject ?? ''));
    if (found.length >= count) return found[count - 1];
    if (Date.now() > deadline) {
      const seen = mails().map((m) => `${m.rcpt_to} "${m.subject}"`).join('\n  ');
      assert.fail(`no mail ${subject} to ${to} within ${timeoutMs} ms; the sink has:\n  ${seen}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function mailsTo(to) {
  return mails().filter((m) => m.rcpt_to.includes(to));
}

// The link to PATH (e.g. "/verify-email") in a mail's text part, on this server.
export function linkIn(mail, pagePath) {
  const escaped = (baseUrl + pagePath).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const m = (mail.text ?? '').match(new RegExp(`${escaped}\\?token=[A-Za-z0-9_%.~-]+`));
  assert.ok(m, `no ${pagePath} link in:\n${mail.text}`);
  return m[0];
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret, for the MFA enrolment.
export function totp(secret, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h.readUInt32BE(o) & 0x7fffffff) % 1000000).toString();
  return n.padStart(6, '0');
}

// Fills the labelled field.
export async function fill(page, label, value) {
  await page.getByLabel(label, { exact: true }).fill(value);
}

// The API outside the browser (setup and checks), JSON in and out.
export async function apiCall(method, route, body, headers = {}) {
  const r = await fetch(baseUrl + route, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : {} };
}

// A new user owning a new tenant, through the API (token session).
export async function signUpByApi(tag) {
  const email = uniqueEmail(tag);
  const password = strongPassword();
  const r = await apiCall('POST', '/api/auth/signup', {
    email, password, name: `${tag} user`, organization_name: `${tag} org`,
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { email, password, token: r.body.access_token, tenant: r.body.tenant, userId: r.body.user.id };
}

// Test setup that the API under test does not offer, as the database owner (the run's database).
export function sql(statement) {
  const r = spawnSync('psql', [process.env.HSEA_E2E_DATABASE_ADMIN_URL, '-v', 'ON_ERROR_STOP=1',
    '-qtAc', statement], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

// A new user in the owner's tenant with `role`, through an invitation accepted with the mailed
// token.
export async function invitee(owner, role, tag) {
  // Inviting needs a verified address; account-flows.spec.mjs verifies through the mail.
  sql(`UPDATE users SET email_verified = true WHERE id = '${owner.userId}'`);
  const email = uniqueEmail(`${tag}-${role}`);
  const password = strongPassword();
  const r = await apiCall('POST', '/api/invitations', { email, role },
    { Authorization: `Bearer ${owner.token}` });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const link = linkIn(await waitForMail(email, /invited you/), '/accept-invitation');
  const token = new URL(link).searchParams.get('token');
  const accepted = await apiCall('POST', '/api/invitations/accept',
    { token, name: `${role} user`, password, session: 'token' });
  assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
  return { email, password };
}

// Signs in through the sign-in page and waits for the account area.
export async function signIn(page, email, password) {
  await page.goto('/login');
  await fill(page, 'E-mail', email);
  await fill(page, 'Password', password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
}

export async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
}
