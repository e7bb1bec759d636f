// The account area (signed in): profile, security (password, e-mail, MFA), sessions, API keys,
// and for owners and admins the organization's members, invitations and rate-limit reports.
import { useEffect, useState, type FormEvent } from 'react';
import {
  api,
  listAll,
  type ApiKey,
  type Invitation,
  type Me,
  type Member,
  type SessionInfo,
  type User,
} from '../api';
import { navigate } from '../router';
import { Billing } from './billing';
import { RateLimits } from './ratelimits';
import { Usage } from './usage';
import { currentRole, useSession } from '../session';
import {
  Field,
  ItemTable,
  Link,
  Notice,
  Page,
  ProblemSummary,
  Section,
  Submit,
  useAction,
  useList,
  when,
} from '../ui';

const sections = [
  { path: '/account', label: 'Profile' },
  { path: '/account/security', label: 'Security' },
  { path: '/account/sessions', label: 'Sessions' },
  { path: '/account/api-keys', label: 'API keys', admin: true },
  { path: '/account/members', label: 'Members', admin: true },
  { path: '/account/invitations', label: 'Invitations', admin: true },
  { path: '/account/usage', label: 'Usage', usage: true },
  { path: '/account/rate-limits', label: 'Rate limits', admin: true },
  { path: '/account/billing', label: 'Billing', billing: true },
];

const isAdmin = (me: Me) => ['owner', 'admin'].includes(currentRole(me) ?? '');
const seesBilling = (me: Me) => ['owner', 'admin', 'billing'].includes(currentRole(me) ?? '');
const seesUsage = (me: Me) => ['owner', 'admin', 'member'].includes(currentRole(me) ?? '');

export function Account({ path }: { path: string }) {
  const { me } = useSession();
  useEffect(() => {
    if (me === null) {
      navigate(`/login?next=${encodeURIComponent(path + window.location.search)}`, true);
    }
  }, [me, path]);
  if (!me) return <p>Loading…</p>;
  const visible = sections.filter(
    (s) =>
      (!s.admin || isAdmin(me)) && (!s.billing || seesBilling(me)) && (!s.usage || seesUsage(me)),
  );
  const section = sections.find((s) => s.path === path);
  return (
    <div className="account">
      <nav aria-label="Account">
        <ul>
          {visible.map((s) => (
            <li key={s.path}>
              <Link to={s.path} className={s.path === path ? 'current' : undefined}>
                {s.label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <div className="account-body">
        {!section ? (
          <Page title="Page not found">
            <p>There is no such page in your account.</p>
          </Page>
        ) : path === '/account' ? (
          <Profile me={me} />
        ) : path === '/account/security' ? (
          <Security me={me} />
        ) : path === '/account/sessions' ? (
          <Sessions />
        ) : path === '/account/api-keys' ? (
          <ApiKeys />
        ) : path === '/account/billing' ? (
          <Billing />
        ) : path === '/account/usage' ? (
          <Usage />
        ) : path === '/account/rate-limits' ? (
          <RateLimits />
        ) : path === '/account/members' ? (
          <Members me={me} />
        ) : (
          <Invitations />
        )}
      </div>
    </div>
  );
}

function Profile({ me }: { me: Me }) {
  const { reload } = useSession();
  const [name, setName] = useState(me.name);
  const [saved, setSaved] = useState(false);
  const save = useAction();
  const resend = useAction();
  const [resent, setResent] = useState(false);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setSaved(false);
    if (await save.run(() => api<User>('PATCH', '/api/me', { name }))) {
      await reload();
      setSaved(true);
    }
  }
  return (
    <Page title="Profile">
      <dl>
        <dt>E-mail</dt>
        <dd>
          {me.email} {me.email_verified ? '(verified)' : '(not verified)'}
        </dd>
        <dt>Organizations</dt>
        <dd>{me.tenants.map((t) => `${t.name} (${t.role})`).join(', ')}</dd>
      </dl>
      {!me.email_verified && (
        <form onSubmit={async (e) => {
          e.preventDefault();
          if (await resend.run(() => api('POST', '/api/auth/verify-email/resend'))) {
            setResent(true);
          }
        }}>
          <ProblemSummary error={resend.error} />
          {resent && <Notice>We sent a new verification link to {me.email}.</Notice>}
          <Submit busy={resend.busy}>Send a new verification link</Submit>
        </form>
      )}
      <Section title="Your name">
        <form onSubmit={submit} noValidate>
          <ProblemSummary error={save.error} />
          {saved && <Notice>Saved.</Notice>}
          <Field label="Name" name="name" value={name} onChange={setName} error={save.error}
            autoComplete="name" />
          <Submit busy={save.busy}>Save</Submit>
        </form>
      </Section>
    </Page>
  );
}

function Security({ me }: { me: Me }) {
  return (
    <Page title="Security">
      <ChangePassword />
      <ChangeEmail me={me} />
      <Mfa me={me} />
    </Page>
  );
}

function ChangePassword() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState(false);
  const { busy, error, run } = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    setDone(false);
    const r = await run(() =>
      api('POST', '/api/me/password', { current_password: current, new_password: next }),
    );
    if (r !== undefined) {
      setDone(true);
      setCurrent('');
      setNext('');
    }
  }
  return (
    <Section title="Password">
      <form onSubmit={submit} noValidate>
        <ProblemSummary error={error} />
        {done && <Notice>Your password is changed.</Notice>}
        <Field label="Current password" name="current_password" type="password" value={current}
          onChange={setCurrent} error={error} autoComplete="current-password" />
        <Field label="New password" name="new_password" type="password" value={next}
          onChange={setNext} error={error} autoComplete="new-password"
          hint="At least 12 characters; not a common password." />
        <Submit busy={busy}>Change password</Submit>
      </form>
    </Section>
  );
}

function ChangeEmail({ me }: { me: Me }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [sentTo, setSentTo] = useState('');
  const { busy, error, run } = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    setSentTo('');
    if ((await run(() => api('POST', '/api/me/email', { email, password }))) !== undefined) {
      setSentTo(email);
      setPassword('');
    }
  }
  return (
    <Section title="E-mail address">
      <p>Now: {me.email}</p>
      <form onSubmit={submit} noValidate>
        <ProblemSummary error={error} />
        {sentTo && (
          <Notice>We sent a link to {sentTo}. The change takes effect when you open it.</Notice>
        )}
        <Field label="New e-mail" name="email" type="email" value={email} onChange={setEmail}
          error={error} autoComplete="email" />
        <Field label="Password (to confirm the change)" name="password" type="password"
          value={password}
          onChange={setPassword} error={error} autoComplete="current-password" />
        <Submit busy={busy}>Change e-mail</Submit>
      </form>
    </Section>
  );
}

interface Enrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

function Mfa({ me }: { me: Me }) {
  const { reload } = useSession();
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [code, setCode] = useState('');
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [offCode, setOffCode] = useState('');
  const { busy, error, run } = useAction();
  async function start() {
    const e = await run(() => api<Enrolment>('POST', '/api/me/mfa/totp'));
    if (e) setEnrolment(e);
  }
  async function confirm(e: FormEvent) {
    e.preventDefault();
    const r = await run(() =>
      api<{ recovery_codes: string[] }>('POST', '/api/me/mfa/totp/confirm', {
        code: code.replace(/\s/g, ''),
      }),
    );
    if (!r) return;
    setRecovery(r.recovery_codes);
    setEnrolment(null);
    setCode('');
    await reload();
  }
  async function turnOff(e: FormEvent) {
    e.preventDefault();
    if ((await run(() => api('DELETE', '/api/me/mfa', { password: offCode }))) !== undefined) {
      setOffCode('');
      setRecovery(null);
      await reload();
    }
  }
  return (
    <Section title="Two-factor authentication">
      <ProblemSummary error={error} />
      {recovery && (
        <div className="recovery" role="status">
          <p>
            Two-factor authentication is on. Keep these recovery codes somewhere safe: each
            signs you in once without the app, and they are shown only now.
          </p>
          <ul className="codes" aria-label="Recovery codes">
            {recovery.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      {me.mfa_enabled ? (
        <form onSubmit={turnOff} noValidate>
          <p>Two-factor authentication is on.</p>
          <Field label="Password (to turn it off)" name="password" type="password"
            value={offCode} onChange={setOffCode} error={error}
            autoComplete="current-password" />
          <Submit busy={busy}>Turn off two-factor authentication</Submit>
        </form>
      ) : enrolment ? (
        <form onSubmit={confirm} noValidate>
          <p>Scan the code with your authenticator app, or type the key by hand.</p>
          <img className="qr" alt="QR code to scan with your authenticator app" width={200}
            height={200}
            src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`} />
          <p>
            Key: <code data-testid="totp-secret">{enrolment.secret}</code>
          </p>
          <Field label="Code from the app" name="code" value={code} onChange={setCode}
            error={error} autoComplete="one-time-code" inputMode="numeric" />
          <Submit busy={busy}>Turn on</Submit>
        </form>
      ) : (
        <>
          <p>Two-factor authentication is off.</p>
          <button type="button" onClick={start} disabled={busy}>
            Set up two-factor authentication
          </button>
        </>
      )}
    </Section>
  );
}

function Sessions() {
  const list = useList(() => listAll<SessionInfo>('/api/me/sessions'));
  const revoke = useAction();
  return (
    <Page title="Sessions">
      <ProblemSummary error={list.error ?? revoke.error} />
      <ItemTable
        caption="Where you are signed in"
        columns={['Device', 'Address', 'Signed in', 'Last seen', '']}
        items={list.items}
        row={(s) => (
          <tr key={s.id}>
            <td>
              {s.device}
              {s.current && ' (this session)'}
            </td>
            <td>{s.ip}</td>
            <td>{when(s.created_at)}</td>
            <td>{when(s.last_seen_at)}</td>
            <td>
              {!s.current && (
                <button type="button" aria-label={`Revoke ${s.device} session from ${s.ip}`}
                  onClick={async () => {
                    if ((await revoke.run(() =>
                      api('DELETE', `/api/me/sessions/${s.id}`))) !== undefined) {
                      await list.refresh();
                    }
                  }}>
                  Revoke
                </button>
              )}
            </td>
          </tr>
        )}
      />
    </Page>
  );
}

const scopeChoices = ['read', 'write', 'tenant:read', 'tenant:write', 'members:read',
  'audit:read', 'api_keys:read', 'jobs:read', 'jobs:write', 'events:read'];

function ApiKeys() {
  const list = useList(() => listAll<ApiKey>('/api/api-keys'));
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['read']);
  const [secret, setSecret] = useState<{ name: string; key: string } | null>(null);
  const create = useAction();
  const change = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    const key = await create.run(() => api<ApiKey>('POST', '/api/api-keys', { name, scopes }));
    if (!key?.key) return;
    setSecret({ name: key.name, key: key.key });
    setName('');
    await list.refresh();
  }
  async function rotate(k: ApiKey) {
    const key = await change.run(() => api<ApiKey>('POST', `/api/api-keys/${k.id}/rotate`));
    if (key?.key) setSecret({ name: key.name, key: key.key });
    await list.refresh();
  }
  async function revoke(k: ApiKey) {
    if ((await change.run(() => api('DELETE', `/api/api-keys/${k.id}`))) !== undefined) {
      await list.refresh();
    }
  }
  return (
    <Page title="API keys">
      {secret && (
        <div className="secret" role="status">
          <p>
            The key {secret.name} is shown only now. Copy it; send it as{' '}
            <code>Authorization: Bearer &lt;key&gt;</code>. After a rotation the old key keeps
            working until the time in its Expires column, so clients can switch over.
          </p>
          <p>
            <code data-testid="api-key-secret">{secret.key}</code>
          </p>
          <button type="button" onClick={() => setSecret(null)}>I have copied it</button>
        </div>
      )}
      <Section title="New key">
        <form onSubmit={submit} noValidate>
          <ProblemSummary error={create.error} />
          <Field label="Key name" name="name" value={name} onChange={setName}
            error={create.error} autoComplete="off" />
          <fieldset>
            <legend>Scopes</legend>
            {scopeChoices.map((s) => (
              <label key={s} className="check">
                <input type="checkbox" checked={scopes.includes(s)} onChange={(e) =>
                  setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} />
                {s}
              </label>
            ))}
          </fieldset>
          <Submit busy={create.busy}>Create key</Submit>
        </form>
      </Section>
      <Section title="Keys">
        <ProblemSummary error={list.error ?? change.error} />
        <ItemTable
          columns={['Name', 'Prefix', 'Scopes', 'Last used', 'Expires', '']}
          items={list.items}
          empty="No keys yet."
          row={(k) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}</code>
              </td>
              <td>{k.scopes.join(', ')}</td>
              <td>{when(k.last_used_at)}</td>
              <td>{k.expires_at ? when(k.expires_at) : 'never'}</td>
              <td className="actions">
                <button type="button" aria-label={`Rotate ${k.name} (${k.prefix})`}
                  onClick={() => rotate(k)}>
                  Rotate
                </button>
                <button type="button" aria-label={`Revoke ${k.name} (${k.prefix})`}
                  onClick={() => revoke(k)}>
                  Revoke
                </button>
              </td>
            </tr>
          )}
        />
      </Section>
    </Page>
  );
}

const roles = ['owner', 'admin', 'member', 'billing'] as const;

function Members({ me }: { me: Me }) {
  const list = useList(() => listAll<Member>('/api/members'));
  const change = useAction();
  const [notice, setNotice] = useState('');
  async function setRole(m: Member, role: string) {
    setNotice('');
    // The list first, then the notice: what the notice says is on the page when it appears.
    const changed = await change.run(() => api('PATCH', `/api/members/${m.user_id}`, { role }));
    await list.refresh();
    if (changed) setNotice(`${m.email ?? m.user_id} is now ${role}.`);
  }
  async function remove(m: Member) {
    setNotice('');
    const removed = await change.run(() => api('DELETE', `/api/members/${m.user_id}`));
    await list.refresh();
    if (removed !== undefined) setNotice(`${m.email ?? m.user_id} was removed.`);
  }
  return (
    <Page title="Members">
      <ProblemSummary error={list.error ?? change.error} />
      {notice && <Notice>{notice}</Notice>}
      <ItemTable
        columns={['Name', 'E-mail', 'Role', '']}
        items={list.items}
        row={(m) => (
          <tr key={m.user_id}>
            <td>{m.name}</td>
            <td>{m.email}</td>
            <td>
              <select aria-label={`Role of ${m.email ?? m.user_id}`} value={m.role}
                onChange={(e) => setRole(m, e.target.value)}>
                {roles.map((r) => (
                  <option key={r} value={r}>{r}</option>
                ))}
              </select>
            </td>
            <td>
              {m.user_id !== me.id && (
                <button type="button" aria-label={`Remove ${m.email ?? m.user_id}`}
                  onClick={() => remove(m)}>
                  Remove
                </button>
              )}
            </td>
          </tr>
        )}
      />
    </Page>
  );
}

function Invitations() {
  const list = useList(() => listAll<Invitation>('/api/invitations'));
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<string>('member');
  const [notice, setNotice] = useState('');
  const invite = useAction();
  const change = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    setNotice('');
    const r = await invite.run(() => api<Invitation>('POST', '/api/invitations', { email, role }));
    if (!r) return;
    setEmail('');
    await list.refresh();
    setNotice(`We sent an invitation to ${r.email}.`);
  }
  async function act(i: Invitation, what: 'resend' | 'revoke') {
    setNotice('');
    const r = await change.run(() =>
      what === 'resend'
        ? api('POST', `/api/invitations/${i.id}/resend`)
        : api('DELETE', `/api/invitations/${i.id}`),
    );
    await list.refresh();
    if (r !== undefined) {
      setNotice(what === 'resend' ? `Sent again to ${i.email}.` : `Revoked ${i.email}'s invitation.`);
    }
  }
  return (
    <Page title="Invitations">
      {notice && <Notice>{notice}</Notice>}
      <Section title="Invite someone">
        <form onSubmit={submit} noValidate>
          <ProblemSummary error={invite.error} />
          <Field label="E-mail" name="email" type="email" value={email} onChange={setEmail}
            error={invite.error} autoComplete="off" />
          <div className="field">
            <label htmlFor="invite-role">Role</label>
            <select id="invite-role" value={role} onChange={(e) => setRole(e.target.value)}>
              {roles.map((r) => (
                <option key={r} value={r}>{r}</option>
              ))}
            </select>
          </div>
          <Submit busy={invite.busy}>Send invitation</Submit>
        </form>
      </Section>
      <Section title="Sent invitations">
        <ProblemSummary error={list.error ?? change.error} />
        <ItemTable
          columns={['E-mail', 'Role', 'Status', 'Expires', '']}
          items={list.items}
          empty="No invitations yet."
          row={(i) => (
            <tr key={i.id}>
              <td>{i.email}</td>
              <td>{i.role}</td>
              <td>{i.status}</td>
              <td>{when(i.expires_at)}</td>
              <td className="actions">
                {(i.status === 'open' || i.status === 'expired') && (
                  <button type="button" aria-label={`Resend to ${i.email}`}
                    onClick={() => act(i, 'resend')}>
                    Resend
                  </button>
                )}
                {i.status === 'open' && (
                  <button type="button" aria-label={`Revoke invitation of ${i.email}`}
                    onClick={() => act(i, 'revoke')}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          )}
        />
      </Section>
    </Page>
  );
}
