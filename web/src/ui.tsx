// Shared form pieces: every control has a label, errors from a problem+json answer appear next
// to the form (title and detail) and next to their field (from `errors`), announced to screen
// readers, and focus moves to the summary so keyboard users land on it.
import { useCallback, useEffect, useId, useRef, useState, type ReactNode } from 'react';
import { ApiError } from './api';
import { navigate } from './router';

export function Link(props: { to: string; children: ReactNode; className?: string }) {
  return (
    <a
      href={props.to}
      className={props.className}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}

export function ProblemSummary({ error }: { error: ApiError | null }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (error) ref.current?.focus();
  }, [error]);
  if (!error) return null;
  return (
    <div className="problem" role="alert" tabIndex={-1} ref={ref}>
      <p className="problem-title">{error.title}</p>
      {error.detail && <p>{error.detail}</p>}
      {error.errors.length > 0 && (
        <ul>
          {error.errors.map((e) => (
            <li key={e.field + e.message}>
              {e.field ? `${e.field}: ` : ''}
              {e.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Notice({ children }: { children: ReactNode }) {
  return (
    <div className="notice" role="status">
      {children}
    </div>
  );
}

interface FieldProps {
  label: string;
  name: string;
  type?: string;
  value: string;
  onChange: (value: string) => void;
  error?: ApiError | null;
  autoComplete?: string;
  required?: boolean;
  hint?: string;
  inputMode?: 'numeric' | 'email' | 'text';
  minLength?: number;
}

export function Field(p: FieldProps) {
  const id = useId();
  const message = p.error?.fieldError(p.name);
  const described = [p.hint ? `${id}-hint` : '', message ? `${id}-error` : '']
    .filter(Boolean)
    .join(' ');
  return (
    <div className="field">
      <label htmlFor={id}>{p.label}</label>
      {p.hint && (
        <p className="hint" id={`${id}-hint`}>
          {p.hint}
        </p>
      )}
      <input
        id={id}
        name={p.name}
        type={p.type ?? 'text'}
        value={p.value}
        onChange={(e) => p.onChange(e.target.value)}
        autoComplete={p.autoComplete}
        required={p.required ?? true}
        inputMode={p.inputMode}
        minLength={p.minLength}
        aria-invalid={message ? true : undefined}
        aria-describedby={described || undefined}
      />
      {message && (
        <p className="field-error" id={`${id}-error`}>
          {message}
        </p>
      )}
    </div>
  );
}

// Runs an API call from a form: busy while it runs, the problem kept for display.
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  async function run<T>(action: () => Promise<T>): Promise<T | undefined> {
    setBusy(true);
    setError(null);
    try {
      return await action();
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, { title: String(e) }));
      return undefined;
    } finally {
      setBusy(false);
    }
  }
  return { busy, error, setError, run };
}

export function Submit({ busy, children }: { busy: boolean; children: ReactNode }) {
  return (
    <button type="submit" disabled={busy} aria-busy={busy || undefined}>
      {children}
    </button>
  );
}

export function Page({ title, children }: { title: string; children: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · HSEA`;
  }, [title]);
  return (
    <>
      <h1>{title}</h1>
      {children}
    </>
  );
}

export function Section({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

export const when = (iso?: string | null) => (iso ? new Date(iso).toLocaleString() : '—');

// Loads a list and reloads it after each change.
export function useList<T>(load: () => Promise<T[]>) {
  const [items, setItems] = useState<T[] | null>(null);
  const { error, run } = useAction();
  const refresh = useCallback(async () => {
    const r = await run(load);
    if (r) setItems(r);
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    void refresh();
  }, [refresh]);
  return { items, error, refresh };
}

// A loaded list as a table: a header per column (an empty name is the actions column, named for
// screen readers only) and a row per item; with `empty`, an empty list is that sentence instead.
export function ItemTable<T>(p: {
  caption?: string;
  columns: string[];
  items: T[] | null;
  empty?: string;
  row: (item: T) => ReactNode;
}) {
  if (!p.items) return null;
  if (p.items.length === 0 && p.empty) return <p>{p.empty}</p>;
  return (
    <table>
      {p.caption && <caption>{p.caption}</caption>}
      <thead>
        <tr>
          {p.columns.map((c, i) => (
            <th key={i} scope="col">
              {c || <span className="visually-hidden">Actions</span>}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{p.items.map(p.row)}</tbody>
    </table>
  );
}
