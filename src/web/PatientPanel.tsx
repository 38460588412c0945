import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { api, ApiError, routeExists } from './api.ts';
import type { Directory, Live } from './App.tsx';
import { CHANNEL_ICONS, CHANNEL_LABELS, channelLabel, formatAgo, formatTime } from './format.ts';
import type { PatientPanelData } from './types.ts';

/**
 * Link and merge belong to the identity API (another branch): the controls show only where it answers. The probe
 * is a merge with an empty body, which the route refuses as invalid (400) before touching anything; a server
 * without the route answers 404 "no route". (GET …/identities is not a probe: the consent API answers it too.)
 */
let identityApi: Promise<boolean> | null = null;
const hasIdentityApi = (patientId: string) => (identityApi ??= routeExists('POST', `/api/patients/${patientId}/merge`, {}));

const CONSENT_KEY = /consent|opt|unsubscrib/i;

export function PatientPanel({ patientId, live, directory, now }: { patientId: string; live: Live; directory: Directory; now: number }) {
  const [panel, setPanel] = useState<PatientPanelData | null>(null);
  const [canLink, setCanLink] = useState(false);
  const load = useCallback(() => {
    void api<PatientPanelData>('GET', `/api/patients/${patientId}`)
      .then(setPanel)
      .catch(() => setPanel(null));
  }, [patientId]);
  useEffect(load, [load]);
  useEffect(() => void hasIdentityApi(patientId).then(setCanLink), [patientId]);
  useEffect(() => live.subscribe((e) => e.type === 'activity' && e.patientId === patientId && e.kind !== 'status' && load()), [live, patientId, load]);
  if (!panel) return <aside className="panel" aria-label="Patient details" />;
  const facts: Array<[string, string]> = [
    ['Program', panel.program],
    ['Language', panel.language],
    ['Region', panel.region],
    ['Time zone', panel.timezone],
    ['Risk tier', panel.riskTier],
    ['Priority', panel.priority ? String(panel.priority) : null],
  ].filter((entry): entry is [string, string] => Boolean(entry[1]));
  for (const [key, value] of Object.entries(panel.attributes)) facts.push([key, typeof value === 'string' ? value : JSON.stringify(value)]);
  return (
    <aside className="panel" aria-labelledby="panel-title">
      <h2 id="panel-title">Patient</h2>
      <section aria-labelledby="identities-title">
        <h3 id="identities-title">Reachable at</h3>
        <ul className="identities">
          {panel.identities.map((identity) => {
            const consent = Object.entries(identity).filter(([key, value]) => CONSENT_KEY.test(key) && value !== null && value !== undefined);
            return (
              <li key={String(identity.id)}>
                <span aria-hidden="true">{CHANNEL_ICONS[String(identity.channel)] ?? '•'}</span> <strong>{channelLabel(String(identity.channel))}</strong> {String(identity.address)}
                <br />
                <span className="muted">{identity.last_inbound_at ? `last wrote ${formatAgo(String(identity.last_inbound_at), now)}` : 'never wrote from here'}</span>
                {consent.map(([key, value]) => (
                  <span key={key} className="consent">
                    {key.replace(/_/g, ' ')}: {typeof value === 'boolean' ? (value ? 'yes' : 'no') : typeof value === 'string' ? value : JSON.stringify(value)}
                  </span>
                ))}
              </li>
            );
          })}
        </ul>
        {canLink && <LinkMerge patientId={patientId} onChanged={load} />}
      </section>
      {(facts.length > 0 || panel.tags.length > 0) && (
        <section aria-labelledby="attributes-title">
          <h3 id="attributes-title">Attributes</h3>
          <dl className="detail">
            {facts.map(([key, value]) => (
              <div key={key}>
                <dt>{key}</dt>
                <dd>{value}</dd>
              </div>
            ))}
          </dl>
          {panel.tags.map((tag) => (
            <span key={tag} className="tag">
              {tag}
            </span>
          ))}
        </section>
      )}
      <section aria-labelledby="assignment-title">
        <h3 id="assignment-title">Assignment</h3>
        <p>
          {panel.assignment
            ? panel.assignment.coordinatorId
              ? `With ${directory.nameOf(panel.assignment.coordinatorId)}`
              : `In the ${directory.teamName(panel.assignment.teamId)} queue`
            : 'Unassigned'}
        </p>
        <ol className="history">
          {panel.history.map((entry) => (
            <li key={entry.seq}>
              <time dateTime={entry.at}>{formatTime(entry.at)}</time> {entry.kind.replace(/_/g, ' ')}
              {entry.toCoordinatorId
                ? ` → ${directory.nameOf(entry.toCoordinatorId)}`
                : assignmentTarget(entry.detail, directory)}
              {entry.note ? `: ${entry.note}` : ''}
            </li>
          ))}
        </ol>
      </section>
    </aside>
  );
}

/** Routing decisions name their target in detail.assignment; team handoffs in detail.toTeamId. */
function assignmentTarget(detail: unknown, directory: Directory): string {
  const d = (detail && typeof detail === 'object' ? detail : {}) as { assignment?: { coordinatorId?: string; teamId?: string }; toTeamId?: string };
  if (d.assignment?.coordinatorId) return ` → ${directory.nameOf(d.assignment.coordinatorId)}`;
  if (d.assignment?.teamId) return ` → ${directory.teamName(d.assignment.teamId)} queue`;
  if (d.toTeamId) return ` → ${directory.teamName(d.toTeamId)} queue`;
  return '';
}

function LinkMerge({ patientId, onChanged }: { patientId: string; onChanged(): void }) {
  const [channel, setChannel] = useState('sms');
  const [address, setAddress] = useState('');
  const [other, setOther] = useState('');
  const [message, setMessage] = useState<string | null>(null);
  const run = async (event: FormEvent, path: string, body: unknown) => {
    event.preventDefault();
    try {
      await api('POST', path, body);
      setMessage('Done.');
      onChanged();
    } catch (caught) {
      setMessage(caught instanceof ApiError ? caught.message : 'Failed.');
    }
  };
  return (
    <div className="link-merge">
      <form onSubmit={(e) => void run(e, `/api/patients/${patientId}/identities`, { channel, address })}>
        <label htmlFor="link-channel">Link identity</label>
        <select id="link-channel" value={channel} onChange={(e) => setChannel(e.target.value)}>
          {Object.entries(CHANNEL_LABELS).map(([id, label]) => (
            <option key={id} value={id}>
              {label}
            </option>
          ))}
        </select>
        <label htmlFor="link-address" className="visually-hidden">
          Address
        </label>
        <input id="link-address" placeholder="Address" value={address} onChange={(e) => setAddress(e.target.value)} required />
        <button type="submit" className="secondary">
          Link
        </button>
      </form>
      <form onSubmit={(e) => void run(e, `/api/patients/${patientId}/merge`, { patientId: other })}>
        <label htmlFor="merge-id">Merge another patient into this one (patient id)</label>
        <input id="merge-id" value={other} onChange={(e) => setOther(e.target.value)} required />
        <button type="submit" className="secondary">
          Merge
        </button>
      </form>
      {message && <p role="status">{message}</p>}
    </div>
  );
}
