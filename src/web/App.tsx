import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { AlertBanners } from './Alerts.tsx';
import { api, setCsrfToken } from './api.ts';
import type { Drafts } from './Composer.tsx';
import { Inbox } from './Inbox.tsx';
import { connectLive, type LiveEvent } from './live.ts';
import { Login } from './Login.tsx';
import { PatientPanel } from './PatientPanel.tsx';
import { Supervisor } from './Supervisor.tsx';
import { Thread } from './Thread.tsx';
import type { CoordinatorSummary, Me, Team } from './types.ts';

export interface Directory {
  coordinators: CoordinatorSummary[];
  teams: Team[];
  nameOf(id: string | null | undefined): string;
  teamName(id: string | null | undefined): string;
}

type Route = { view: 'inbox'; patientId: string | null } | { view: 'supervisor' };

function parseRoute(path: string): Route {
  if (path.startsWith('/supervisor')) return { view: 'supervisor' };
  const match = /^\/inbox\/([0-9a-f-]{36})/i.exec(path);
  return { view: 'inbox', patientId: match ? match[1]! : null };
}

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  useEffect(() => {
    api<{ coordinator: Me; csrfToken: string }>('GET', '/api/session')
      .then((session) => {
        setCsrfToken(session.csrfToken);
        setMe(session.coordinator);
      })
      .catch(() => setMe(null));
    const signedOut = () => setMe(null);
    window.addEventListener('switchboard:signed-out', signedOut);
    return () => window.removeEventListener('switchboard:signed-out', signedOut);
  }, []);
  if (me === undefined) return <p className="loading">Loading…</p>;
  if (me === null)
    return (
      <Login
        onSignedIn={(signedIn, csrf) => {
          setCsrfToken(csrf);
          setMe(signedIn);
          if (location.pathname === '/' || location.pathname === '/login') history.replaceState(null, '', '/inbox');
        }}
      />
    );
  return <Shell me={me} onSignOut={() => setMe(null)} />;
}

type LiveListener = (event: LiveEvent) => void;

/** Where keys are text, not shortcuts: fields, dialogs, and the whole composer (its Reply / Private note buttons too). */
const TYPING_AREA = 'input, textarea, select, dialog, [contenteditable]:not([contenteditable="false"]), [data-no-shortcuts]';

/**
 * Whether a key press may run an inbox shortcut. Never with a modifier, and never when the key lands in, or focus
 * has just been moved to, a typing area: a letter of a note must not switch patients or open a reply box.
 */
function isShortcutKey(event: KeyboardEvent): boolean {
  if (event.metaKey || event.ctrlKey || event.altKey || event.shiftKey || event.isComposing || event.defaultPrevented) return false;
  for (const element of [event.target, document.activeElement]) {
    if (element instanceof Element && (element.closest(TYPING_AREA) || (element instanceof HTMLElement && element.isContentEditable))) return false;
  }
  return true;
}

function Shell({ me, onSignOut }: { me: Me; onSignOut: () => void }) {
  const [route, setRoute] = useState<Route>(() => parseRoute(location.pathname));
  const [directory, setDirectory] = useState<Directory>({ coordinators: [], teams: [], nameOf: () => 'someone', teamName: () => 'a team' });
  const [connected, setConnected] = useState(false);
  const [toast, setToast] = useState<string | null>(null);
  const listeners = useRef(new Set<LiveListener>());
  const [now, setNow] = useState(() => Date.now());
  const order = useRef<string[]>([]);
  const drafts = useRef<Drafts>(new Map()).current;

  useEffect(() => {
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(tick);
  }, []);

  useEffect(() => {
    const onPop = () => setRoute(parseRoute(location.pathname));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  useEffect(() => {
    void Promise.all([api<{ coordinators: CoordinatorSummary[] }>('GET', '/api/coordinators'), api<{ teams: Team[] }>('GET', '/api/teams')]).then(([c, t]) => {
      const names = new Map(c.coordinators.map((x) => [x.id, x.name]));
      const teams = new Map(t.teams.map((x) => [x.id, x.name]));
      setDirectory({
        coordinators: c.coordinators,
        teams: t.teams,
        nameOf: (id) => (id ? (id === me.id ? 'You' : (names.get(id) ?? 'a coordinator')) : 'nobody'),
        teamName: (id) => (id ? (teams.get(id) ?? 'a team') : 'no team'),
      });
    });
  }, [me.id]);

  useEffect(
    () =>
      connectLive(
        (event) => {
          for (const listener of listeners.current) listener(event);
        },
        setConnected,
      ),
    [],
  );

  const subscribe = useCallback((listener: LiveListener) => {
    listeners.current.add(listener);
    return () => void listeners.current.delete(listener);
  }, []);

  const navigate = useCallback((path: string) => {
    history.pushState(null, '', path);
    setRoute(parseRoute(path));
  }, []);

  const openPatient = useCallback((patientId: string | null) => navigate(patientId ? `/inbox/${patientId}` : '/inbox'), [navigate]);

  // j/k move between conversations, r focuses the reply box; never while typing, in the composer or in a dialog.
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (!isShortcutKey(event) || route.view !== 'inbox') return;
      if (event.key === 'j' || event.key === 'k') {
        const ids = order.current;
        if (ids.length === 0) return;
        const index = route.patientId ? ids.indexOf(route.patientId) : -1;
        const next = event.key === 'j' ? Math.min(ids.length - 1, index + 1) : Math.max(0, index - 1);
        event.preventDefault();
        openPatient(ids[next]!);
        requestAnimationFrame(() => document.querySelector<HTMLElement>(`[data-patient-id="${ids[next]}"]`)?.focus());
      } else if (event.key === 'r' && route.patientId) {
        event.preventDefault();
        document.getElementById('composer-text')?.focus();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [route, openPatient]);

  const signOut = async () => {
    await api('POST', '/api/session/logout').catch(() => {});
    onSignOut();
  };

  const live = useMemo(() => ({ subscribe }), [subscribe]);

  return (
    <div className="app">
      <header className="topbar">
        <a className="skip-link" href="#main">
          Skip to content
        </a>
        <span className="brand">Switchboard</span>
        <nav aria-label="Views">
          <a href="/inbox" aria-current={route.view === 'inbox' ? 'page' : undefined} onClick={(e) => (e.preventDefault(), navigate('/inbox'))}>
            Inbox
          </a>
          {me.role !== 'coordinator' && (
            <a href="/supervisor" aria-current={route.view === 'supervisor' ? 'page' : undefined} onClick={(e) => (e.preventDefault(), navigate('/supervisor'))}>
              Supervisor
            </a>
          )}
        </nav>
        <span className={`live-dot ${connected ? 'on' : 'off'}`} role="status" aria-label={connected ? 'Live updates connected' : 'Live updates reconnecting'}>
          {connected ? 'Live' : 'Reconnecting…'}
        </span>
        <span className="who">
          {me.name} <span className="role">({me.role})</span>
        </span>
        <button type="button" className="secondary" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <div className="toast-region" aria-live="polite" role="status">
        {toast && (
          <div className="toast">
            {toast}{' '}
            <button type="button" className="link" onClick={() => setToast(null)} aria-label="Dismiss notification">
              ✕
            </button>
          </div>
        )}
      </div>
      {me.role !== 'coordinator' ? <AlertBanners live={live} onOpen={openPatient} /> : <div className="alert-region" />}
      {route.view === 'supervisor' ? (
        <main id="main" className="supervisor-main">
          <Supervisor me={me} directory={directory} live={live} now={now} onOpen={openPatient} />
        </main>
      ) : (
        <div className={`workspace ${route.patientId ? 'has-thread' : ''}`}>
          <Inbox
            me={me}
            live={live}
            now={now}
            selected={route.patientId}
            onOpen={openPatient}
            onOrder={(ids) => (order.current = ids)}
            onNotify={setToast}
            directory={directory}
          />
          <main id="main" className="thread-pane">
            {route.patientId ? (
              <Thread key={route.patientId} me={me} patientId={route.patientId} live={live} now={now} directory={directory} drafts={drafts} onClose={() => openPatient(null)} onNotify={setToast} />
            ) : (
              <div className="empty">
                <h1>Inbox</h1>
                <p>Select a conversation. Keys: j / k move between conversations, r replies.</p>
              </div>
            )}
          </main>
          {route.patientId && <PatientPanel key={route.patientId} patientId={route.patientId} live={live} directory={directory} now={now} />}
        </div>
      )}
    </div>
  );
}

export interface Live {
  subscribe(listener: LiveListener): () => void;
}
