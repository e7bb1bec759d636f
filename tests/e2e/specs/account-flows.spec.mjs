// The mailed-link flows of branch acct-flows: e-mail verification (and a bad link), forgotten
// password and reset, password change, e-mail change confirmed through the link to the new
// address. Every link is read from the mail the SMTP sink received.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkPage, fill, launch, linkIn, mailsTo, newPage, signIn, signOut, strongPassword,
  uniqueEmail, waitForMail,
} from '../lib.mjs';

describe('account flows', () => {
  let browser;
  let page;
  const email = uniqueEmail('flows');
  let password = strongPassword();

  before(async () => {
    browser = await launch();
    page = await newPage(browser);
  });
  after(async () => {
    await browser?.close();
  });

  it('verifies the e-mail address through the mailed link', async () => {
    await page.goto('/signup');
    await fill(page, 'Your name', 'Grace Hopper');
    await fill(page, 'E-mail', email);
    await fill(page, 'Password', password);
    await fill(page, 'Organization name', 'Compilers Inc');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    await page.getByText('(not verified)').waitFor();

    await waitForMail(email, /confirm/i);
    // A bad link says so at the page, which offers a new link; the new one replaces the first.
    await page.goto('/verify-email?token=not-a-real-token');
    await page.getByRole('alert').waitFor();
    await checkPage(page, 'verify-email-bad-token');
    await page.getByRole('button', { name: 'Send a new link' }).click();
    await page.getByText(`We sent a new link to ${email}.`).waitFor();

    const mail = await waitForMail(email, /confirm/i, 2);
    await page.goto(linkIn(mail, '/verify-email'));
    await page.getByText('Your e-mail address is verified.').waitFor();
    await checkPage(page, 'verify-email');
    await page.goto('/account');
    await page.getByText('(verified)').waitFor();
  });

  it('resets a forgotten password through the mailed link', async () => {
    await signOut(page);
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await page.getByRole('heading', { name: 'Reset your password', level: 1 }).waitFor();
    await checkPage(page, 'forgot-password');
    await fill(page, 'E-mail', email);
    await page.getByRole('button', { name: 'Send the link' }).click();
    await page.getByText(/we sent it a link/).waitFor();
    await checkPage(page, 'forgot-password-sent');

    const mail = await waitForMail(email, /reset/i);
    await page.goto(linkIn(mail, '/reset-password'));
    await page.getByRole('heading', { name: 'Choose a new password', level: 1 }).waitFor();
    await checkPage(page, 'reset-password');
    await fill(page, 'New password', 'password');
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('alert').waitFor();
    assert.equal(
      await page.getByLabel('New password', { exact: true }).getAttribute('aria-invalid'), 'true');
    await checkPage(page, 'reset-password-weak');
    password = strongPassword();
    await fill(page, 'New password', password);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByText('Your password is changed').waitFor();
    await checkPage(page, 'reset-password-done');
    await signIn(page, email, password);
  });

  it('changes the password, refusing a wrong current one', async () => {
    await page.goto('/account/security');
    await fill(page, 'Current password', 'not-my-password-at-all');
    await fill(page, 'New password', strongPassword());
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('alert').waitFor();
    await checkPage(page, 'account-password-wrong');
    const next = strongPassword();
    await fill(page, 'Current password', password);
    await fill(page, 'New password', next);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByText('Your password is changed.').waitFor();
    password = next;
    await signOut(page);
    await signIn(page, email, password);
  });

  it('changes the e-mail address once the new one confirms', async () => {
    const newEmail = uniqueEmail('flows-new');
    await page.goto('/account/security');
    await fill(page, 'New e-mail', newEmail);
    await fill(page, 'Password (to confirm the change)', password);
    await page.getByRole('button', { name: 'Change e-mail' }).click();
    await page.getByText(`We sent a link to ${newEmail}.`).waitFor();
    await checkPage(page, 'account-email-change-sent');
    await page.goto('/account');
    await page.getByText(email).first().waitFor(); // not changed yet

    const mail = await waitForMail(newEmail);
    await page.goto(linkIn(mail, '/confirm-email'));
    await page.getByText(`Your e-mail address is now ${newEmail}.`).waitFor();
    await checkPage(page, 'confirm-email');
    await signOut(page);
    await signIn(page, newEmail, password);
    assert.ok(mailsTo(newEmail).length >= 1);
  });
});
