// Invitations of branch invitations: an owner invites from the account area (list, resend,
// revoke); a new user accepts through the mailed link, choosing a name and password; an
// existing user accepts signed in; the owner then manages them as members. The invitee's
// organizations show the inviting tenant only after accepting.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkPage, fill, launch, linkIn, mailsTo, newPage, signIn, signUpByApi, sql, strongPassword,
  uniqueEmail, waitForMail,
} from '../lib.mjs';

describe('invitations', () => {
  let browser;
  let owner;
  let ownerPage;
  const newcomer = uniqueEmail('invitee');
  let existing;

  before(async () => {
    browser = await launch();
    owner = await signUpByApi('inviter');
    // Inviting needs a verified address; account-flows.spec.mjs verifies through the mail.
    sql(`UPDATE users SET email_verified = true WHERE email = '${owner.email}'`);
    existing = await signUpByApi('existing');
    ownerPage = await newPage(browser);
    await signIn(ownerPage, owner.email, owner.password);
  });
  after(async () => {
    await browser?.close();
  });

  it('invites, lists, resends and revokes from the account area', async () => {
    const page = ownerPage;
    await page.getByRole('link', { name: 'Invitations' }).click();
    await page.getByRole('heading', { name: 'Invitations', level: 1 }).waitFor();
    await page.getByText('No invitations yet.').waitFor();
    await checkPage(page, 'account-invitations');

    await fill(page, 'E-mail', 'not-an-address');
    await page.getByRole('button', { name: 'Send invitation' }).click();
    await page.getByRole('alert').waitFor();
    await checkPage(page, 'account-invitations-problem');

    for (const to of [newcomer, existing.email, uniqueEmail('revoked')]) {
      await fill(page, 'E-mail', to);
      await page.getByRole('button', { name: 'Send invitation' }).click();
      await page.getByText(`We sent an invitation to ${to}.`).waitFor();
      await page.getByRole('cell', { name: to, exact: true }).waitFor();
    }
    await checkPage(page, 'account-invitations-pending');
    await waitForMail(newcomer, /invited you/);

    await page.getByRole('button', { name: `Resend to ${newcomer}` }).click();
    await page.getByText(`Sent again to ${newcomer}.`).waitFor();
    await waitForMail(newcomer, /invited you/, 2);

    const revokedRow = page.getByRole('row').filter({ hasText: 'revoked-' });
    const revokedEmail = await revokedRow.getByRole('cell').first().innerText();
    await page.getByRole('button', { name: `Revoke invitation of ${revokedEmail}` }).click();
    await page.getByText(`Revoked ${revokedEmail}'s invitation.`).waitFor();
    assert.equal(await revokedRow.getByRole('cell').nth(2).innerText(), 'revoked');
    assert.equal(await page.getByRole('button', { name: `Revoke invitation of ${revokedEmail}` })
      .count(), 0);

    // The revoked invitation's link no longer works.
    const context = await browser.newContext({ baseURL: new URL(page.url()).origin });
    const other = await context.newPage();
    await other.goto(linkIn(await waitForMail(revokedEmail, /invited you/), '/accept-invitation'));
    await fill(other, 'Your name', 'Nobody');
    await fill(other, 'Password', strongPassword());
    await other.getByRole('button', { name: 'Accept invitation' }).click();
    await other.getByRole('alert').waitFor();
    await context.close();
  });

  it('lets a new user accept with a name and password', async () => {
    const page = await newPage(browser);
    const mails = mailsTo(newcomer);
    await page.goto(linkIn(mails[mails.length - 1], '/accept-invitation'));
    await page.getByRole('heading', { name: 'Join an organization', level: 1 }).waitFor();
    await checkPage(page, 'accept-invitation-new-user');
    const password = strongPassword();
    await fill(page, 'Your name', 'New Colleague');
    await fill(page, 'Password', password);
    await page.getByRole('button', { name: 'Accept invitation' }).click();
    await page.waitForURL(/\/(account|login)/);
    if (new URL(page.url()).pathname === '/login') await signIn(page, newcomer, password);
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    await page.getByText(`${owner.tenant.name} (member)`).waitFor();
    await checkPage(page, 'accept-invitation-done');
  });

  it('lets a signed-in user accept', async () => {
    const page = await newPage(browser);
    await signIn(page, existing.email, existing.password);
    assert.equal(await page.getByText(owner.tenant.name).count(), 0);
    await page.goto(linkIn(await waitForMail(existing.email, /invited you/),
      '/accept-invitation'));
    await page.getByText(`You are signed in as ${existing.email}.`).waitFor();
    await checkPage(page, 'accept-invitation-signed-in');
    await page.getByRole('button', { name: 'Accept invitation' }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    await page.getByText(owner.tenant.name, { exact: false }).first().waitFor();
  });

  it('shows both as members the owner can manage', async () => {
    const page = ownerPage;
    await page.goto('/account/members');
    const role = page.getByRole('combobox', { name: `Role of ${newcomer}` });
    await role.waitFor();
    await page.getByRole('combobox', { name: `Role of ${existing.email}` }).waitFor();
    await role.selectOption('billing');
    await page.getByText(`${newcomer} is now billing.`).waitFor();
    await page.getByRole('button', { name: `Remove ${existing.email}` }).click();
    await page.getByText(`${existing.email} was removed.`).waitFor();
    await page.goto('/account/invitations');
    for (const email of [newcomer, existing.email]) {
      const row = page.getByRole('row').filter({ hasText: email });
      assert.equal(await row.getByRole('cell').nth(2).innerText(), 'used');
    }
  });
});
