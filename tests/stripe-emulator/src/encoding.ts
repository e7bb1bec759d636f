// Stripe's request encoding: application/x-www-form-urlencoded bodies (and query strings) whose
// keys nest with brackets: `a[b][c]=v`, `items[0][price]=p`, `expand[]=x`. Every leaf is a string;
// the handlers convert with the typed readers below, which fail with Stripe's own error codes.
import { StripeError } from './errors';

export type Param = string | Params | Param[];
export interface Params {
  [key: string]: Param;
}

function splitKey(key: string): string[] {
  const open = key.indexOf('[');
  if (open <= 0) return [key];
  const parts = [key.slice(0, open)];
  const re = /\[([^\]]*)\]/g;
  let m: RegExpExecArray | null;
  re.lastIndex = open;
  while ((m = re.exec(key)) !== null) parts.push(m[1]);
  return parts;
}

// Objects whose keys are all array indices become arrays (in index order), recursively.
function arrayify(v: Param): Param {
  if (typeof v === 'string' || Array.isArray(v)) {
    return Array.isArray(v) ? v.map(arrayify) : v;
  }
  const keys = Object.keys(v);
  for (const k of keys) v[k] = arrayify(v[k]);
  if (keys.length > 0 && keys.every((k) => /^\d+$/.test(k))) {
    return keys.sort((a, b) => Number(a) - Number(b)).map((k) => v[k]);
  }
  return v;
}

export function decodeForm(text: string): Params {
  const root: Params = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const parts = splitKey(rawKey);
    let node: Params = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const last = i === parts.length - 1;
      if (part === '') {
        // `x[]=v`: append; the parent was created as an object keyed by position.
        const k = String(Object.keys(node).length);
        if (last) node[k] = value;
        else node = (node[k] = {}) as Params;
        continue;
      }
      if (last) {
        node[part] = value;
      } else {
        const existing = node[part];
        if (typeof existing === 'string') {
          throw StripeError.invalid(`Invalid parameter: ${rawKey} mixes a value and a hash`, part);
        }
        if (existing === undefined) node[part] = {};
        node = node[part] as Params;
      }
    }
  }
  return arrayify(root) as Params;
}

// Stripe's own encoding, for tests and for the request log (same rules as the SDK's).
export function encodeForm(value: Params, prefix = ''): string {
  const out: string[] = [];
  const walk = (v: Param, key: string) => {
    if (typeof v === 'string') out.push(`${encodeURIComponent(key)}=${encodeURIComponent(v)}`);
    else if (Array.isArray(v)) v.forEach((e, i) => walk(e, `${key}[${i}]`));
    else for (const k of Object.keys(v)) walk(v[k], key ? `${key}[${k}]` : k);
  };
  walk(value, prefix);
  return out.join('&');
}

// Typed readers. `name` is the parameter's full name as Stripe reports it in `param`.
export function str(p: Params, key: string, name = key): string | undefined {
  const v = p[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw StripeError.invalid(`Invalid string: ${name}`, name);
  return v;
}
export function reqStr(p: Params, key: string, name = key): string {
  const v = str(p, key, name);
  if (v === undefined || v === '') {
    throw StripeError.invalid(`Missing required param: ${name}.`, name, 'parameter_missing');
  }
  return v;
}
export function int(p: Params, key: string, name = key): number | undefined {
  const v = str(p, key, name);
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw StripeError.invalid(`Invalid integer: ${v}`, name, 'parameter_invalid_integer');
  }
  return Number(v);
}
export function bool(p: Params, key: string, name = key): boolean | undefined {
  const v = str(p, key, name);
  if (v === undefined || v === '') return undefined;
  if (v !== 'true' && v !== 'false') throw StripeError.invalid(`Invalid boolean: ${v}`, name);
  return v === 'true';
}
export function hash(p: Params, key: string, name = key): Params | undefined {
  const v = p[key];
  if (v === undefined || v === '') return undefined;
  if (typeof v === 'string' || Array.isArray(v)) {
    throw StripeError.invalid(`Invalid object: ${name}`, name);
  }
  return v;
}
export function list(p: Params, key: string, name = key): Param[] | undefined {
  const v = p[key];
  if (v === undefined || v === '') return undefined;
  if (!Array.isArray(v)) throw StripeError.invalid(`Invalid array: ${name}`, name);
  return v;
}
export function oneOf<T extends string>(
  p: Params,
  key: string,
  allowed: readonly T[],
  name = key,
): T | undefined {
  const v = str(p, key, name);
  if (v === undefined || v === '') return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw StripeError.invalid(
      `Invalid ${name}: must be one of ${allowed.join(', ')}`,
      name,
      'parameter_invalid_string',
    );
  }
  return v as T;
}

// Metadata: `metadata[k]=v` sets, `metadata[k]=` removes, `metadata=` clears (Stripe's rules).
export function applyMetadata(
  current: Record<string, string>,
  p: Params,
  key = 'metadata',
): Record<string, string> {
  const v = p[key];
  if (v === undefined) return current;
  if (v === '') return {};
  if (typeof v === 'string' || Array.isArray(v)) throw StripeError.invalid('Invalid metadata', key);
  const out = { ...current };
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw StripeError.invalid('Invalid metadata value', `${key}[${k}]`);
    if (val === '') delete out[k];
    else out[k] = val;
  }
  return out;
}

// Real Stripe refuses parameters it does not know; so does the emulator (top level), so a client
// typo fails here as it would against api.stripe.com.
export function allowOnly(p: Params, allowed: readonly string[]): void {
  for (const k of Object.keys(p)) {
    if (k === 'expand') continue;
    if (!allowed.includes(k)) {
      throw StripeError.invalid(
        `Received unknown parameter: ${k} (the Stripe emulator takes the parameters listed in tests/stripe-emulator/README.md)`,
        k, 'parameter_unknown');
    }
  }
}
