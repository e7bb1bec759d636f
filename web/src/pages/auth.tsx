// The signed-out pages: sign-up, sign-in (with the MFA step), and the pages mailed links open.
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { api, ApiError, rememberSession, type SessionAnswer } from '../api';
import { navigate } from '../router';
import { useSession } from '../session';
import { Field, Link, Notice, Page, ProblemSummary, Submit, useAction } from '../ui';

// Where to go after signing in: a same-origin path from ?next=, else the account area.
function nextPath(query: URLSearchParams): string {
  const next = query.get('next') ?? '';
  return next.startsWith('/') && !next.startsWith('//') ? next : '/account';
}

export function SignUp() {
  const { reload } = useSession();
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [organization, setOrganization] = useState('');
  const { busy, error, run } = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    const answer = await run(() =>
      api<SessionAnswer>('POST', '/api/auth/signup', {
        name,
        email,
        password,
        organization_name: organization,
        session: 'cookie',
      }),
    );
    if (!answer) return;
    rememberSession(answer);
    await reload();
    navigate('/account');
  }
  return (
    <Page title="Create your account">
      <form onSubmit={submit} noValidate>
        <ProblemSummary error={error} />
        <Field label="Your name" name="name" value={name} onChange={setName} error={error}
          autoComplete="name" />
        <Field label="E-mail" name="email" type="email" value={email} onChange={setEmail}
          error={error} autoComplete="email" />
        <Field label="Password" name="password" type="password" value={password}
          onChange={setPassword} error={error} autoComplete="new-password"
          hint="At least 12 characters; not a common password." />
        <Field label="Organization name" name="organization_name" value={organization}
          onChange={setOrganization} error={error} autoComplete="organization" />
        <Submit busy={busy}>Create account</Submit>
      </form>
      <p>
        Already have an account? <Link to="/login">Sign in</Link>
      </p>
    </Page>
  );
}

export function SignIn({ query }: { query: URLSearchParams }) {
  const { reload } = useSession();
  const [email, setEmail] = useState(query.get('email') ?? '');
  const [password, setPassword] = useState('');
  const [mfaToken, setMfaToken] = useState('');
  const [code, setCode] = useState('');
  const [useRecovery, setUseRecovery] = useState(false);
  const { busy, error, setError, run } = useAction();
  const codeHeading = useRef<HTMLHeadingElement>(null);

  async function finish(answer: SessionAnswer) {
    rememberSession(answer);
    await reload();
    navigate(nextPath(query));
  }
  async function submitPassword(e: FormEvent) {
    e.preventDefault();
    const answer = await run(() =>
      api<SessionAnswer>('POST', '/api/auth/login', { email, password, session: 'cookie' }),
    );
    if (!answer) return;
    if (answer.mfa_required && answer.mfa_token) {
      setMfaToken(answer.mfa_token);
      return;
    }
    await finish(answer);
  }
  async function submitCode(e: FormEvent) {
    e.preventDefault();
    const body = useRecovery
      ? { mfa_token: mfaToken, recovery_code: code.trim() }
      : { mfa_token: mfaToken, code: code.replace(/\s/g, '') };
    const answer = await run(() => api<SessionAnswer>('POST', '/api/auth/mfa/verify', body));
    if (answer) await finish(answer);
  }
  useEffect(() => {
    if (mfaToken) codeHeading.current?.focus();
  }, [mfaToken]);

  if (mfaToken) {
    return (
      <Page title="Sign in">
        <h2 tabIndex={-1} ref={codeHeading}>
          Two-factor authentication
        </h2>
        <form onSubmit={submitCode} noValidate>
          <ProblemSummary error={error} />
          {useRecovery ? (
            <Field label="Recovery code" name="recovery_code" value={code} onChange={setCode}
              error={error} autoComplete="off" />
          ) : (
            <Field label="Code from your authenticator app" name="code" value={code}
              onChange={setCode} error={error} autoComplete="one-time-code"
              inputMode="numeric" />
          )}
          <Submit busy={busy}>Verify</Submit>
        </form>
        <p>
          <button type="button" className="link" onClick={() => {
            setUseRecovery(!useRecovery);
            setCode('');
            setError(null);
          }}>
            {useRecovery ? 'Use a code from the app instead' : 'Use a recovery code instead'}
          </button>
        </p>
      </Page>
    );
  }
  return (
    <Page title="Sign in">
      <form onSubmit={submitPassword} noValidate>
        <ProblemSummary error={error} />
        <Field label="E-mail" name="email" type="email" value={email} onChange={setEmail}
          error={error} autoComplete="username" />
        <Field label="Password" name="password" type="password" value={password}
          onChange={setPassword} error={error} autoComplete="current-password" />
        <Submit busy={busy}>Sign in</Submit>
      </form>
      <p>
        <Link to="/forgot-password">Forgot your password?</Link>
      </p>
      <p>
        New here? <Link to="/signup">Create an account</Link>
      </p>
    </Page>
  );
}

// Runs a token's POST once when the page opens (a mailed link): verify e-mail, confirm an
// e-mail change.
function useTokenAction(path: string, token: string) {
  const { busy, error, run } = useAction();
  const [done, setDone] = useState(false);
  const started = useRef(false);
  useEffect(() => {
    if (started.current || !token) return;
    started.current = true;
    void run(() => api('POST', path, { token })).then((r) => {
      if (r !== undefined) setDone(true);
    });
  }, [path, token]); // eslint-disable-line react-hooks/exhaustive-deps
  return { busy, error, done };
}

const missingToken = new ApiError(400, {
  title: 'This link is incomplete',
  detail: 'Open the link from the e-mail again, or copy all of it into the address bar.',
});

export function VerifyEmail({ query }: { query: URLSearchParams }) {
  const token = query.get('token') ?? '';
  const { me, reload } = useSession();
  const { busy, error, done } = useTokenAction('/api/auth/verify-email', token);
  const resend = useAction();
  const [resent, setResent] = useState(false);
  useEffect(() => {
    if (done) void reload();
  }, [done, reload]);
  return (
    <Page title="Verify your e-mail">
      {busy && <p>Verifying…</p>}
      {done && (
        <Notice>
          Your e-mail address is verified. <Link to={me ? '/account' : '/login'}>Continue</Link>
        </Notice>
      )}
      <ProblemSummary error={token ? error : missingToken} />
      {(error || !token) && me && !me.email_verified && (
        <form onSubmit={async (e) => {
          e.preventDefault();
          if (await resend.run(() => api('POST', '/api/auth/verify-email/resend'))) {
            setResent(true);
          }
        }}>
          <ProblemSummary error={resend.error} />
          {resent && <Notice>We sent a new link to {me.email}.</Notice>}
          <Submit busy={resend.busy}>Send a new link</Submit>
        </form>
      )}
    </Page>
  );
}

export function ForgotPassword() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState(false);
  const { busy, error, run } = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    if ((await run(() => api('POST', '/api/auth/password/forgot', { email }))) !== undefined) {
      setSent(true);
    }
  }
  return (
    <Page title="Reset your password">
      {sent ? (
        <Notice>
          If an account uses {email}, we sent it a link to choose a new password. The link works
          once and expires soon.
        </Notice>
      ) : (
        <form onSubmit={submit} noValidate>
          <ProblemSummary error={error} />
          <Field label="E-mail" name="email" type="email" value={email} onChange={setEmail}
            error={error} autoComplete="email" />
          <Submit busy={busy}>Send the link</Submit>
        </form>
      )}
      <p>
        <Link to="/login">Back to sign in</Link>
      </p>
    </Page>
  );
}

export function ResetPassword({ query }: { query: URLSearchParams }) {
  const token = query.get('token') ?? '';
  const [password, setPassword] = useState('');
  const [done, setDone] = useState(false);
  const { busy, error, run } = useAction();
  async function submit(e: FormEvent) {
    e.preventDefault();
    const r = await run(() => api('POST', '/api/auth/password/reset', { token, password }));
    if (r !== undefined) setDone(true);
  }
  if (!token) {
    return (
      <Page title="Choose a new password">
        <ProblemSummary error={missingToken} />
        <p>
          <Link to="/forgot-password">Ask for a new link</Link>
        </p>
      </Page>
    );
  }
  return (
    <Page title="Choose a new password">
      {done ? (
        <Notice>
          Your password is changed, and every session was signed out.{' '}
          <Link to="/login">Sign in</Link>
        </Notice>
      ) : (
        <form onSubmit={submit} noValidate>
          <ProblemSummary error={error} />
          <Field label="New password" name="password" type="password" value={password}
            onChange={setPassword} error={error} autoComplete="new-password"
            hint="At least 12 characters; not a common password." />
          <Submit busy={busy}>Change password</Submit>
        </form>
      )}
    </Page>
  );
}

export function ConfirmEmail({ query }: { query: URLSearchParams }) {
  const token = query.get('token') ?? '';
  const { me, reload } = useSession();
  // The change is the signed-in user's: wait for the session before sending the token.
  const ready = me !== undefined;
  const { busy, error, done } = useTokenAction('/api/me/email/confirm', ready && me ? token : '');
  useEffect(() => {
    if (done) void reload();
  }, [done, reload]);
  const here = `/confirm-email?token=${encodeURIComponent(token)}`;
  return (
    <Page title="Confirm your new e-mail">
      {!token && <ProblemSummary error={missingToken} />}
      {token && ready && !me && (
        <p>
          <Link to={`/login?next=${encodeURIComponent(here)}`}>Sign in</Link> to confirm the
          change.
        </p>
      )}
      {busy && <p>Confirming…</p>}
      {done && (
        <Notice>
          Your e-mail address is now {me?.email}. <Link to="/account">Back to your account</Link>
        </Notice>
      )}
      <ProblemSummary error={error} />
    </Page>
  );
}

export function AcceptInvitation({ query }: { query: URLSearchParams }) {
  const token = query.get('token') ?? '';
  const { me, reload } = useSession();
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const { busy, error, run } = useAction();
  async function accept(e: FormEvent) {
    e.preventDefault();
    const body = me ? { token } : { token, password, name, session: 'cookie' };
    const answer = await run(() => api<SessionAnswer>('POST', '/api/invitations/accept', body));
    if (answer === undefined) return;
    rememberSession(answer);
    const signedIn = await reload();
    navigate(signedIn ? '/account' : '/login?accepted=1');
  }
  if (!token) {
    return (
      <Page title="Join an organization">
        <ProblemSummary error={missingToken} />
      </Page>
    );
  }
  if (me === undefined) return <Page title="Join an organization">{null}</Page>;
  return (
    <Page title="Join an organization">
      <form onSubmit={accept} noValidate>
        <ProblemSummary error={error} />
        {me ? (
          <p>
            You are signed in as {me.email}. Accept the invitation to join with this account.
          </p>
        ) : (
          <>
            <p>
              New to HSEA? Choose your name and a password. Already have an account?{' '}
              <Link to={`/login?next=${encodeURIComponent(
                `/accept-invitation?token=${encodeURIComponent(token)}`)}`}>Sign in first</Link>.
            </p>
            <Field label="Your name" name="name" value={name} onChange={setName} error={error}
              autoComplete="name" />
            <Field label="Password" name="password" type="password" value={password}
              onChange={setPassword} error={error} autoComplete="new-password"
              hint="At least 12 characters; not a common password." />
          </>
        )}
        <Submit busy={busy}>Accept invitation</Submit>
      </form>
    </Page>
  );
}
