import { useEffect, useRef, useState, type FormEvent } from 'react';
import { api, ApiError } from './api.ts';
import type { Directory } from './App.tsx';
import type { Me } from './types.ts';

export function HandoffDialog(props: { patientId: string; me: Me; directory: Directory; onClose(): void; onDone(to: string): void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [target, setTarget] = useState('');
  const [note, setNote] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const coordinators = props.directory.coordinators.filter((c) => c.id !== props.me.id && c.role !== 'admin');
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const [kind, id] = target.split(':');
    try {
      await api('POST', `/api/patients/${props.patientId}/handoff`, kind === 'team' ? { toTeamId: id, note } : { toCoordinatorId: id, note });
      props.onDone(kind === 'team' ? props.directory.teamName(id) : props.directory.nameOf(id));
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : 'Handoff failed.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={dialog} className="dialog" aria-labelledby="handoff-title" onClose={props.onClose}>
      <form onSubmit={(e) => void submit(e)}>
        <h2 id="handoff-title">Hand off this patient</h2>
        <label htmlFor="handoff-target">Hand off to</label>
        <select id="handoff-target" required value={target} onChange={(e) => setTarget(e.target.value)}>
          <option value="">Choose a coordinator or team…</option>
          <optgroup label="Coordinators">
            {coordinators.map((c) => (
              <option key={c.id} value={`coordinator:${c.id}`}>
                {c.name}
                {c.isAvailable ? '' : ' (away)'}
              </option>
            ))}
          </optgroup>
          {props.directory.teams.length > 0 && (
            <optgroup label="Team queues">
              {props.directory.teams.map((t) => (
                <option key={t.id} value={`team:${t.id}`}>
                  {t.name}
                </option>
              ))}
            </optgroup>
          )}
        </select>
        <label htmlFor="handoff-note">Note for the receiver</label>
        <textarea id="handoff-note" required rows={3} value={note} onChange={(e) => setNote(e.target.value)} />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="button" className="secondary" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button type="submit" disabled={busy || !target || !note.trim()}>
            Hand off
          </button>
        </div>
      </form>
    </dialog>
  );
}
