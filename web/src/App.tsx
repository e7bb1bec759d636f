import { useEffect, useRef } from 'react';
import { api } from './api';
import { Account } from './pages/account';
import {
  AcceptInvitation,
  ConfirmEmail,
  ForgotPassword,
  ResetPassword,
  SignIn,
  SignUp,
  VerifyEmail,
} from './pages/auth';
import { navigate, useLocation } from './router';
import { SessionProvider, useSession } from './session';
import { Link, Page } from './ui';

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, true), [to]);
  return null;
}

function Body({ path, query }: { path: string; query: URLSearchParams }) {
  const { me } = useSession();
  switch (path) {
    case '/':
      return me === undefined ? null : <Redirect to={me ? '/account' : '/login'} />;
    case '/signup':
      return <SignUp />;
    case '/login':
      return <SignIn query={query} />;
    case '/verify-email':
      return <VerifyEmail query={query} />;
    case '/forgot-password':
      return <ForgotPassword />;
    case '/reset-password':
      return <ResetPassword query={query} />;
    case '/accept-invitation':
      return <AcceptInvitation query={query} />;
    case '/confirm-email':
      return <ConfirmEmail query={query} />;
  }
  if (path === '/account' || path.startsWith('/account/')) return <Account path={path} />;
  return (
    <Page title="Page not found">
      <p>
        There is no page at this address. <Link to="/">Go to the start page</Link>
      </p>
    </Page>
  );
}

function Header() {
  const { me, signedOut } = useSession();
  return (
    <header>
      <Link to="/" className="brand">HSEA</Link>
      <nav aria-label="Main">
        {me ? (
          <>
            <span className="who">{me.email}</span>
            <button type="button" onClick={async () => {
              await api('POST', '/api/auth/logout').catch(() => undefined);
              signedOut();
              navigate('/login');
            }}>
              Sign out
            </button>
          </>
        ) : me === null ? (
          <>
            <Link to="/login">Sign in</Link> <Link to="/signup">Create account</Link>
          </>
        ) : null}
      </nav>
    </header>
  );
}

export function App() {
  const { path, query } = useLocation();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  // A page change moves focus to the new page's content, as a full load would for a reader.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.focus();
  }, [path]);
  return (
    <SessionProvider>
      <a className="skip" href="#main">Skip to content</a>
      <Header />
      <main id="main" tabIndex={-1} ref={main}>
        <Body path={path} query={query} />
      </main>
    </SessionProvider>
  );
}
