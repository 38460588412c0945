import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { api, ApiError } from './api.ts';
import type { Directory, Live } from './App.tsx';
import { formatDuration } from './format.ts';
import { ReportsDashboard } from './Reports.tsx';
import type { Conversation, Me, SupervisorOverview } from './types.ts';

export function Supervisor(props: { me: Me; directory: Directory; live: Live; now: number; onOpen(patientId: string): void }) {
  const { live, now, directory } = props;
  const [overview, setOverview] = useState<SupervisorOverview | null>(null);
  const [patients, setPatients] = useState<Conversation[]>([]);
  const [selected, setSelected] = useState(new Set<string>());
  const [target, setTarget] = useState('');
  const [note, setNote] = useState('');
  const [message, setMessage] = useState<string | null>(null);

  const load = useCallback(() => {
    void api<SupervisorOverview>('GET', '/api/supervisor/overview').then(setOverview);
    void api<{ conversations: Conversation[] }>('GET', '/api/conversations?filter=all&limit=500').then((r) => setPatients(r.conversations));
  }, []);
  useEffect(load, [load]);
  useEffect(() => live.subscribe(() => load()), [live, load]);

  const wait = (iso: string | null) => (iso ? formatDuration(now - new Date(iso).getTime()) : '—');

  const reassign = async (event: FormEvent) => {
    event.preventDefault();
    const [kind, id] = target.split(':');
    try {
      const result = await api<{ moved: number }>('POST', '/api/supervisor/reassign', {
        patientIds: [...selected],
        ...(kind === 'team' ? { toTeamId: id } : { toCoordinatorId: id }),
        note,
      });
      setMessage(`Moved ${result.moved} of ${selected.size}.`);
      setSelected(new Set());
      load();
    } catch (caught) {
      setMessage(caught instanceof ApiError ? caught.message : 'Reassignment failed.');
    }
  };

  return (
    <div className="supervisor">
      <h1>Supervisor</h1>
      <section aria-labelledby="queues-title">
        <h2 id="queues-title">Coordinator queues</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Coordinator</th>
              <th scope="col">Status</th>
              <th scope="col">Load</th>
              <th scope="col">Waiting</th>
              <th scope="col">Oldest wait</th>
            </tr>
          </thead>
          <tbody>
            {overview?.coordinators.map((c) => (
              <tr key={c.coordinatorId}>
                <th scope="row">{c.name}</th>
                <td>{c.status.replace(/_/g, ' ')}</td>
                <td>
                  <meter min={0} max={Math.max(c.capacity, 1)} value={c.assigned} aria-label={`${c.assigned} of ${c.capacity}`} /> {c.assigned} / {c.capacity}
                </td>
                <td>{c.waiting}</td>
                <td className={c.oldestWaitingSince ? 'waiting' : ''}>{wait(c.oldestWaitingSince)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="teams-title">
        <h2 id="teams-title">Team queues</h2>
        {overview && overview.teams.length === 0 ? (
          <p className="muted">No teams yet.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Team</th>
                <th scope="col">Queued</th>
                <th scope="col">Waiting</th>
                <th scope="col">Oldest wait</th>
              </tr>
            </thead>
            <tbody>
              {overview?.teams.map((t) => (
                <tr key={t.teamId}>
                  <th scope="row">{t.name}</th>
                  <td>{t.queued}</td>
                  <td>{t.waiting}</td>
                  <td>{wait(t.oldestWaitingSince)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="reassign-title">
        <h2 id="reassign-title">Bulk reassign</h2>
        <form onSubmit={(e) => void reassign(e)} className="reassign">
          <fieldset>
            <legend>Patients ({selected.size} selected)</legend>
            <ul className="pick-list">
              {patients.map((p) => (
                <li key={p.patientId}>
                  <input
                    type="checkbox"
                    id={`pick-${p.patientId}`}
                    checked={selected.has(p.patientId)}
                    onChange={(e) => {
                      const next = new Set(selected);
                      if (e.target.checked) next.add(p.patientId);
                      else next.delete(p.patientId);
                      setSelected(next);
                    }}
                  />
                  <label htmlFor={`pick-${p.patientId}`}>
                    {p.displayName ?? p.address ?? 'Unknown'} — {p.coordinatorId ? directory.nameOf(p.coordinatorId) : `${directory.teamName(p.teamId)} queue`}
                    {p.waitingSince ? `, waiting ${wait(p.waitingSince)}` : ''}
                  </label>
                </li>
              ))}
            </ul>
          </fieldset>
          <label htmlFor="reassign-target">Move to</label>
          <select id="reassign-target" required value={target} onChange={(e) => setTarget(e.target.value)}>
            <option value="">Choose…</option>
            {directory.coordinators
              .filter((c) => c.role !== 'admin')
              .map((c) => (
                <option key={c.id} value={`coordinator:${c.id}`}>
                  {c.name}
                </option>
              ))}
            {directory.teams.map((t) => (
              <option key={t.id} value={`team:${t.id}`}>
                {t.name} queue
              </option>
            ))}
          </select>
          <label htmlFor="reassign-note">Note</label>
          <input id="reassign-note" required value={note} onChange={(e) => setNote(e.target.value)} />
          <button type="submit" disabled={selected.size === 0 || !target || !note.trim()}>
            Reassign
          </button>
          {message && <p role="status">{message}</p>}
        </form>
      </section>
      <ReportsDashboard />
      <RoutingRules canRead={props.me.role === 'admin' || props.me.role === 'supervisor'} />
    </div>
  );
}

/** Rules and their versions come from the routing API (another branch); shown read-only when it answers. */
function RoutingRules({ canRead }: { canRead: boolean }) {
  const [rules, setRules] = useState<unknown>(undefined);
  const [versions, setVersions] = useState<unknown>(null);
  const [text, setText] = useState('I need a refill');
  const [dryRun, setDryRun] = useState<unknown>(null);
  useEffect(() => {
    if (!canRead) return;
    api('GET', '/api/admin/routing/rules').then(setRules, () => setRules(null));
    api('GET', '/api/admin/routing/rules/versions').then(setVersions, () => {});
  }, [canRead]);
  if (!rules) return null;
  const run = async (event: FormEvent) => {
    event.preventDefault();
    try {
      setDryRun(await api('POST', '/api/routing/dry-run', { message: { text, channel: 'sms' } }));
    } catch (caught) {
      setDryRun({ error: caught instanceof Error ? caught.message : String(caught) });
    }
  };
  return (
    <section aria-labelledby="rules-title">
      <h2 id="rules-title">Routing rules (read-only)</h2>
      <pre className="json" tabIndex={0}>{JSON.stringify(rules, null, 2)}</pre>
      {versions !== null && <pre className="json" tabIndex={0}>{JSON.stringify(versions, null, 2)}</pre>}
      <form onSubmit={(e) => void run(e)}>
        <label htmlFor="dry-run-text">Dry-run a message</label>
        <input id="dry-run-text" value={text} onChange={(e) => setText(e.target.value)} />
        <button type="submit" className="secondary">
          Dry run
        </button>
      </form>
      {dryRun !== null && <pre className="json" tabIndex={0}>{JSON.stringify(dryRun, null, 2)}</pre>}
    </section>
  );
}
