import { useCallback, useEffect, useState } from 'react';
import { api, ApiError } from './api.ts';
import type { Live } from './App.tsx';

export interface AlertItem {
  id: string;
  ruleId: string;
  state: string;
  severity: string;
  summary: string;
  patientId: string | null;
  startedAt: string;
  firingAt: string | null;
  acknowledgedAt: string | null;
}

const POLL_MS = 15_000;

/**
 * Open alerts (firing and pending) as banners for supervisors and admins, above the inbox and the supervisor view.
 * Polled every 15 s and refreshed on any live event; an acknowledged alert is no longer shown.
 */
export function AlertBanners(props: { live: Live; onOpen(patientId: string): void }) {
  const { live, onOpen } = props;
  const [alerts, setAlerts] = useState<AlertItem[]>([]);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(() => {
    api<{ alerts: AlertItem[] }>('GET', '/api/ops/alerts?state=firing,pending').then(
      (r) => {
        setAlerts(r.alerts.filter((a) => !a.acknowledgedAt));
        setError(null);
      },
      () => {},
    );
  }, []);
  useEffect(() => {
    load();
    const timer = setInterval(load, POLL_MS);
    return () => clearInterval(timer);
  }, [load]);
  useEffect(() => live.subscribe(() => load()), [live, load]);

  const ack = async (id: string) => {
    try {
      await api('POST', `/api/ops/alerts/${id}/ack`);
      setAlerts((current) => current.filter((a) => a.id !== id));
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : 'Acknowledging failed.');
    }
    load();
  };

  if (alerts.length === 0 && !error) return <div className="alert-region" />;
  return (
    <div className="alert-region" role="region" aria-label="Alerts">
      {error && <p className="error">{error}</p>}
      {alerts.map((a) => (
        <div key={a.id} className={`alert-banner severity-${a.severity} state-${a.state}`} data-alert-id={a.id}>
          <strong className="severity">{a.severity}</strong>
          <span className="state">{a.state}</span>
          <span className="summary">{a.summary}</span>
          <span className="since muted">
            {a.state === 'firing' && a.firingAt ? 'firing since ' : 'pending since '}
            <time dateTime={a.firingAt ?? a.startedAt}>{new Date(a.firingAt ?? a.startedAt).toLocaleString()}</time>
          </span>
          {a.patientId && (
            <a href={`/inbox/${a.patientId}`} onClick={(e) => (e.preventDefault(), onOpen(a.patientId!))}>
              Open thread
            </a>
          )}
          <button type="button" className="secondary" onClick={() => void ack(a.id)} aria-label={`Acknowledge: ${a.summary}`}>
            Ack
          </button>
        </div>
      ))}
    </div>
  );
}
