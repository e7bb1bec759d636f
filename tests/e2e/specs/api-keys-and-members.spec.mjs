// The account area's API keys (the secret shown once, rotate, revoke) and members (list, change
// role, remove), each seen only in its own tenant: two tenants, each with its owner.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  apiCall, checkPage, fill, launch, newPage, signIn, signUpByApi, sql,
} from '../lib.mjs';

// Test setup, not the API (invitations.spec.mjs adds members through the UI): a membership row.
function addMember(tenantId, email, role) {
  sql(`INSERT INTO memberships (tenant_id, user_id, role)
       SELECT '${tenantId}', id, '${role}' FROM users WHERE email = '${email}'`);
}

describe('API keys and members', () => {
  let browser;
  let pageA;
  let pageB;
  let ownerA;
  let ownerB;

  before(async () => {
    browser = await launch();
    ownerA = await signUpByApi('keys-a');
    ownerB = await signUpByApi('keys-b');
    pageA = await newPage(browser);
    pageB = await newPage(browser);
    await signIn(pageA, ownerA.email, ownerA.password);
    await signIn(pageB, ownerB.email, ownerB.password);
  });
  after(async () => {
    await browser?.close();
  });

  it('creates a key whose secret is shown once and works', async () => {
    const page = pageA;
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
    await page.getByText('No keys yet.').waitFor();
    await checkPage(page, 'account-api-keys');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByRole('alert').waitFor(); // a name is required: the API's problem
    await checkPage(page, 'account-api-keys-problem');
    await fill(page, 'Key name', 'deploy bot');
    await page.getByRole('checkbox', { name: 'tenant:read' }).check();
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = await page.getByTestId('api-key-secret').innerText();
    assert.ok(secret.length > 20, secret);
    await checkPage(page, 'account-api-keys-secret');
    const tenant = await apiCall('GET', '/api/tenant', undefined,
      { Authorization: `Bearer ${secret}` });
    assert.equal(tenant.status, 200, JSON.stringify(tenant.body));
    assert.equal(tenant.body.id, ownerA.tenant.id);

    await page.getByRole('button', { name: 'I have copied it' }).click();
    assert.equal(await page.getByTestId('api-key-secret').count(), 0);
    await page.reload();
    await page.getByRole('cell', { name: 'deploy bot', exact: true }).waitFor();
    assert.equal(await page.getByText(secret).count(), 0, 'the secret is never listed');

    // The other tenant sees none of it.
    await pageB.goto('/account/api-keys');
    await pageB.getByText('No keys yet.').waitFor();

    await page.getByRole('button', { name: /^Rotate deploy bot/ }).click();
    const rotated = await page.getByTestId('api-key-secret').innerText();
    assert.notEqual(rotated, secret);
    const withNew = await apiCall('GET', '/api/tenant', undefined,
      { Authorization: `Bearer ${rotated}` });
    assert.equal(withNew.status, 200);
    // The old key stays, with an expiry, until its grace period ends.
    const revoke = page.getByRole('button', { name: /^Revoke deploy bot/ });
    await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 2);
    await checkPage(page, 'account-api-keys-rotated');

    for (const key of [rotated, secret]) {
      await revoke.first().click();
      await page.waitForFunction((n) => document.querySelectorAll('tbody tr').length === n,
        key === rotated ? 1 : 0);
    }
    await page.getByText('No keys yet.').waitFor();
    for (const key of [rotated, secret]) {
      const revoked = await apiCall('GET', '/api/tenant', undefined,
        { Authorization: `Bearer ${key}` });
      assert.equal(revoked.status, 401);
    }
  });

  it('lists members, changes a role and removes a member, in its own tenant only', async () => {
    addMember(ownerA.tenant.id, ownerB.email, 'member');
    const page = pageA;
    await page.goto('/account/members');
    await page.getByRole('heading', { name: 'Members', level: 1 }).waitFor();
    const role = page.getByRole('combobox', { name: `Role of ${ownerB.email}` });
    await role.waitFor();
    assert.equal(await role.inputValue(), 'member');
    await checkPage(page, 'account-members');

    await role.selectOption('admin');
    await page.getByText(`${ownerB.email} is now admin.`).waitFor();
    const members = await apiCall('GET', '/api/members', undefined,
      { Authorization: `Bearer ${ownerA.token}` });
    assert.equal(members.body.data.find((m) => m.email === ownerB.email).role, 'admin');

    // B's session is in B's own tenant: A is not among its members.
    await pageB.goto('/account/members');
    await pageB.getByRole('combobox', { name: `Role of ${ownerB.email}` }).waitFor();
    assert.equal(await pageB.getByText(ownerA.email).count(), 0);

    await page.getByRole('button', { name: `Remove ${ownerB.email}` }).click();
    await page.getByText(`${ownerB.email} was removed.`).waitFor();
    assert.equal(await page.getByRole('combobox', { name: `Role of ${ownerB.email}` }).count(), 0);
    // The owner cannot remove themself from the page.
    assert.equal(await page.getByRole('button', { name: `Remove ${ownerA.email}` }).count(), 0);
  });
});
