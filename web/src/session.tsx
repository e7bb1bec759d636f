// The signed-in user (GET /api/me), shared by every page; null when signed out.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { api, ApiError, signedOutEvent, type Me } from './api';

interface SessionState {
  me: Me | null | undefined; // undefined while loading
  reload: () => Promise<Me | null>;
  signedOut: () => void;
}

const SessionContext = createContext<SessionState>({
  me: undefined,
  reload: async () => null,
  signedOut: () => {},
});

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const reload = useCallback(async () => {
    try {
      const fresh = await api<Me>('GET', '/api/me');
      setMe(fresh);
      return fresh;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) console.warn('GET /api/me', e);
      setMe(null);
      return null;
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  useEffect(() => {
    const gone = () => setMe(null);
    window.addEventListener(signedOutEvent, gone);
    return () => window.removeEventListener(signedOutEvent, gone);
  }, []);
  return (
    <SessionContext.Provider value={{ me, reload, signedOut: () => setMe(null) }}>
      {children}
    </SessionContext.Provider>
  );
}

export const useSession = () => useContext(SessionContext);

// The role of the signed-in user in the session's tenant.
export function currentRole(me: Me | null | undefined): string | undefined {
  if (!me) return undefined;
  const tenant = me.tenants.find((t) => t.id === me.current_tenant_id) ?? me.tenants[0];
  return tenant?.role;
}
