// The one way the pages call the API: same-origin JSON with the session cookie. Unsafe requests
// carry the CSRF token (X-CSRF-Token), read from the non-HttpOnly hsea_csrf cookie or taken
// from the csrf_token of the last sign-in or refresh. A 401 is retried once after
// POST /api/auth/refresh; when that fails too the caller gets the 401 (the page signs in again).

export interface FieldError {
  field: string; // without the JSON pointer's leading "/": "email", "scopes/0"
  message: string;
}

// An RFC 9457 problem as the API answers it, or one made here for a network failure.
export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly code: string;
  readonly errors: FieldError[];
  constructor(status: number, body: Record<string, unknown>) {
    const title = typeof body.title === 'string' ? body.title : `Request failed (${status})`;
    super(title);
    this.status = status;
    this.title = title;
    this.detail = typeof body.detail === 'string' ? body.detail : '';
    this.code = typeof body.code === 'string' ? body.code : '';
    const raw = Array.isArray(body.errors) ? body.errors : [];
    this.errors = raw
      .filter((e): e is { field: string; message: string } =>
        typeof e === 'object' && e !== null && typeof e.field === 'string')
      .map((e) => ({ field: e.field.replace(/^\//, ''), message: String(e.message) }));
  }
  fieldError(field: string): string | undefined {
    return this.errors.find((e) => e.field === field || e.field.startsWith(field + '/'))?.message;
  }
}

let csrfFromBody = '';

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)hsea_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : csrfFromBody;
}

// Keeps the token a sign-in, MFA step, invitation or refresh answered with.
export function rememberSession(body: unknown): void {
  if (body && typeof body === 'object' && 'csrf_token' in body) {
    const token = (body as { csrf_token?: unknown }).csrf_token;
    if (typeof token === 'string') csrfFromBody = token;
  }
}

const unsafe = (method: string) => !['GET', 'HEAD', 'OPTIONS'].includes(method);

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (unsafe(method)) {
    const token = csrfToken();
    if (token) headers['X-CSRF-Token'] = token;
  }
  try {
    return await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, {
      title: 'The server could not be reached',
      detail: 'Check your connection and try again.',
    });
  }
}

async function parse<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown = {};
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { title: `Unexpected answer (${response.status})` };
    }
  }
  if (!response.ok) throw new ApiError(response.status, body as Record<string, unknown>);
  return body as T;
}

let refreshing: Promise<boolean> | null = null;

// One refresh at a time; concurrent 401s wait for the same one.
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    try {
      const response = await send('POST', '/api/auth/refresh', {});
      if (!response.ok) return false;
      rememberSession(await response.json().catch(() => ({})));
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

const noRefresh = (path: string) => path.startsWith('/api/auth/');

// Fired when the session is gone (a 401 that a refresh could not cure): the pages show sign-in.
export const signedOutEvent = 'hsea:signed-out';

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  let response = await send(method, path, body);
  // Without a CSRF cookie there is no cookie session to refresh (a signed-out visitor).
  if (response.status === 401 && !noRefresh(path) && csrfToken() && (await refresh())) {
    response = await send(method, path, body);
  }
  if (response.status === 401 && !noRefresh(path)) {
    window.dispatchEvent(new Event(signedOutEvent));
  }
  return parse<T>(response);
}

// ---- the API's shapes the pages use (openapi/openapi.yaml) ---------------------------------

export interface User {
  id: string;
  email: string;
  name: string;
  email_verified: boolean;
  mfa_enabled: boolean;
  created_at: string;
}
export interface Membership {
  id: string;
  slug: string;
  name: string;
  status: string;
  role: 'owner' | 'admin' | 'member' | 'billing';
}
export interface Me extends User {
  tenants: Membership[];
  current_tenant_id?: string | null;
}
export interface SessionAnswer {
  user?: User;
  csrf_token?: string;
  mfa_required?: boolean;
  mfa_token?: string;
  mfa_enrollment_required?: boolean;
}
export interface List<T> {
  data: T[];
  has_more: boolean;
}
export interface SessionInfo {
  id: string;
  kind: string;
  device: string;
  ip: string;
  created_at: string;
  last_seen_at: string;
  current: boolean;
}
export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  expires_at?: string | null;
  last_used_at?: string | null;
  key?: string;
}
export interface Member {
  user_id: string;
  email?: string;
  name?: string;
  role: Membership['role'];
}
export interface Invitation {
  id: string;
  email: string;
  role: Membership['role'];
  status: 'open' | 'used' | 'revoked' | 'expired';
  expires_at: string;
}

// Reads every page of a cursor-paginated list (the account area's lists are short).
export async function listAll<T extends { id?: string; user_id?: string }>(
  path: string,
): Promise<T[]> {
  const all: T[] = [];
  let after = '';
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api<List<T>>(
      'GET',
      `${path}${sep}limit=200${after ? `&starting_after=${encodeURIComponent(after)}` : ''}`,
    );
    all.push(...page.data);
    const last = page.data[page.data.length - 1];
    if (!page.has_more || !last) return all;
    after = last.id ?? last.user_id ?? '';
  }
}
