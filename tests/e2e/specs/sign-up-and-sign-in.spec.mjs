// Sign-up, the welcome mail's link, sign-out and sign-in (with the keyboard only, a wrong
// password's problem shown at the form), and the MFA step with a recovery code after turning
// MFA on in the account area.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkPage, fill, launch, linkIn, newPage, signIn, signOut, strongPassword, totp,
  uniqueEmail, waitForMail,
} from '../lib.mjs';

describe('sign-up and sign-in', () => {
  let browser;
  let page;
  const email = uniqueEmail('signup');
  const password = strongPassword();
  let recoveryCodes = [];

  before(async () => {
    browser = await launch();
    page = await newPage(browser);
  });
  after(async () => {
    await browser?.close();
  });

  it('refuses a weak password next to its field, then signs up', async () => {
    await page.goto('/signup');
    await page.getByRole('heading', { name: 'Create your account', level: 1 }).waitFor();
    await checkPage(page, 'signup');
    await fill(page, 'Your name', 'Ada Lovelace');
    await fill(page, 'E-mail', email);
    await fill(page, 'Password', 'short');
    await fill(page, 'Organization name', 'Analytical Engines');
    await page.getByRole('button', { name: 'Create account' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    // The problem's field error sits next to the password and is tied to it.
    const field = page.getByLabel('Password', { exact: true });
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    const describedBy = (await field.getAttribute('aria-describedby')).split(' ');
    const errorText = await page.locator(`[id="${describedBy.at(-1)}"]`).innerText();
    assert.match(errorText, /.+/);
    await checkPage(page, 'signup-weak-password');

    await fill(page, 'Password', password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/account');
    await page.getByText(email).first().waitFor();
    await checkPage(page, 'account-profile');
  });

  it('sends the welcome mail, whose link opens the app', async () => {
    const mail = await waitForMail(email, /Welcome/);
    const link = (mail.text.match(/https?:\/\/\S+/) ?? [])[0];
    assert.ok(link, mail.text);
    await page.goto(link);
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
  });

  it('signs out, shows a wrong password as a problem, signs in with the keyboard', async () => {
    await signOut(page);
    await checkPage(page, 'login');
    await page.goto('/account/sessions');
    // Signed out, the account area sends to sign-in and back afterwards.
    await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
    assert.equal(new URL(page.url()).searchParams.get('next'), '/account/sessions');

    await fill(page, 'E-mail', email);
    await fill(page, 'Password', 'not-the-password-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /.+/);
    await checkPage(page, 'login-wrong-password');

    // Keyboard only: the summary took focus; Tab to the fields, Enter submits.
    await page.getByLabel('E-mail', { exact: true }).focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('name')),
      'password');
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
    await page.getByRole('cell', { name: /this session/ }).waitFor();
    await checkPage(page, 'account-sessions');
  });

  it('changes the name, and revokes another session, which then signs that browser out',
    async () => {
      await page.goto('/account');
      await fill(page, 'Name', 'Ada King');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Saved.').waitFor();
      await checkPage(page, 'account-profile-saved');

      const other = await newPage(browser);
      await signIn(other, email, password);
      await page.goto('/account/sessions');
      const revoke = page.getByRole('button', { name: /^Revoke .* session from / });
      await revoke.waitFor();
      assert.equal(await revoke.count(), 1, 'only the other session can be revoked here');
      await revoke.click();
      await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
      await page.getByRole('cell', { name: /this session/ }).waitFor();

      // The revoked browser's next request is refused; its page goes to sign-in.
      await other.getByRole('link', { name: 'Sessions' }).click();
      await other.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
      await other.context().close();
    });

  it('turns MFA on: QR code, first code, recovery codes shown once', async () => {
    await page.goto('/account/security');
    await page.getByRole('heading', { name: 'Security', level: 1 }).waitFor();
    await checkPage(page, 'account-security');
    await page.getByRole('button', { name: 'Set up two-factor authentication' }).click();
    const qr = page.getByRole('img', { name: /QR code/ });
    await qr.waitFor();
    assert.match(await qr.getAttribute('src'), /^data:image\/svg\+xml/);
    // The QR code really renders (CSP allows data: images): it has a size.
    assert.ok(await qr.evaluate((img) => img.complete && img.naturalWidth > 0));
    await checkPage(page, 'account-mfa-enrolment');
    const secret = await page.getByTestId('totp-secret').innerText();
    await fill(page, 'Code from the app', totp(secret));
    await page.getByRole('button', { name: 'Turn on' }).click();
    const codes = page.getByRole('list', { name: 'Recovery codes' });
    await codes.waitFor();
    recoveryCodes = await codes.getByRole('listitem').allInnerTexts();
    assert.equal(recoveryCodes.length, 10);
    await checkPage(page, 'account-mfa-recovery-codes');
    // Shown once: a reload does not show them again.
    await page.reload();
    await page.getByText('Two-factor authentication is on.').waitFor();
    assert.equal(await page.getByRole('list', { name: 'Recovery codes' }).count(), 0);
  });

  it('asks for the second factor at sign-in and accepts a recovery code', async () => {
    await signOut(page);
    await fill(page, 'E-mail', email);
    await fill(page, 'Password', password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Two-factor authentication' }).waitFor();
    await checkPage(page, 'login-mfa-step');
    await fill(page, 'Code from your authenticator app', '000000');
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByRole('button', { name: 'Use a recovery code instead' }).click();
    await fill(page, 'Recovery code', recoveryCodes[0]);
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
  });

  it('says "not found" for an unknown page, with status 404', async () => {
    const response = await page.goto('/no-such-page');
    assert.equal(response.status(), 404);
    await page.getByRole('heading', { name: 'Page not found', level: 1 }).waitFor();
    await checkPage(page, 'not-found');
    await page.goto('/account/no-such-section');
    await page.getByRole('heading', { name: 'Page not found', level: 1 }).waitFor();
  });

  it('turns MFA off with the password', async () => {
    await page.goto('/account/security');
    await fill(page, 'Password (to turn it off)', password);
    await page.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
    await page.getByText('Two-factor authentication is off.').waitFor();
    await signOut(page);
    await signIn(page, email, password); // no second step any more
  });
});
