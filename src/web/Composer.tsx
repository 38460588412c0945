import { useCallback, useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { flushSync } from 'react-dom';
import { api, ApiError } from './api.ts';
import type { Live } from './App.tsx';
import { channelLabel, formatAgo } from './format.ts';
import type { CannedResponse, ReplyChannelPreview } from './types.ts';

let cannedCache: Promise<CannedResponse[]> | null = null;
const loadCanned = () => (cannedCache ??= api<{ cannedResponses: CannedResponse[] }>('GET', '/api/canned-responses').then((r) => r.cannedResponses));

/** Warnings a newer reply-channel preview may carry (fallbacks, opt-outs): shown as given. */
function previewWarnings(preview: ReplyChannelPreview): string[] {
  const warnings: string[] = [];
  for (const key of ['warning', 'fallback', 'fallbackReason', 'optOut']) {
    const value = preview[key];
    if (typeof value === 'string' && value) warnings.push(value);
    else if (value && typeof value === 'object' && typeof (value as { reason?: unknown }).reason === 'string') warnings.push((value as { reason: string }).reason);
  }
  if (Array.isArray(preview.warnings)) for (const w of preview.warnings) warnings.push(typeof w === 'string' ? w : JSON.stringify(w));
  // Identities passed over (opted out, window closed…): the reply falls back past them.
  if (preview.ok && Array.isArray(preview.skipped)) {
    for (const s of preview.skipped as Array<{ channel?: string; reason?: string }>) warnings.push(`Fallback: not via ${channelLabel(s.channel)} (${s.reason ?? 'unavailable'})`);
  }
  return warnings;
}

export type ComposerMode = 'reply' | 'note';

/** What a coordinator left unsent for one patient; the idempotency key goes with it so a retried send is one send. */
export interface Draft {
  text: string;
  mode: ComposerMode;
  idempotencyKey: string;
}

/**
 * Drafts by patient id, held by the signed-in shell (gone at sign-out, never stored in the browser): a draft never
 * follows the coordinator to another patient, and a new conversation starts empty in reply mode.
 */
export type Drafts = Map<string, Draft>;

export function Composer({ patientId, patientLabel, drafts, live, now, onSent }: { patientId: string; patientLabel: string; drafts: Drafts; live: Live; now: number; onSent(): void }) {
  const saved = drafts.get(patientId);
  const [text, setText] = useState(saved?.text ?? '');
  const [mode, setMode] = useState<ComposerMode>(saved?.mode ?? 'reply');
  const [preview, setPreview] = useState<ReplyChannelPreview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [canned, setCanned] = useState<CannedResponse[]>([]);
  const [pick, setPick] = useState(0);
  const idempotencyKey = useRef(saved?.idempotencyKey ?? crypto.randomUUID());
  const box = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (text === '' && mode === 'reply') drafts.delete(patientId);
    else drafts.set(patientId, { text, mode, idempotencyKey: idempotencyKey.current });
  }, [drafts, patientId, text, mode]);

  // Focus goes to the text box with the click, before the next key: typed letters are the note, not shortcuts.
  const chooseMode = (next: ComposerMode) => {
    flushSync(() => setMode(next));
    box.current?.focus();
  };

  const loadPreview = useCallback(() => {
    void api<ReplyChannelPreview>('GET', `/api/patients/${patientId}/reply-channel`)
      .then(setPreview)
      .catch(() => setPreview(null));
  }, [patientId]);
  useEffect(loadPreview, [loadPreview]);
  useEffect(() => live.subscribe((event) => event.type === 'activity' && event.patientId === patientId && event.kind === 'message' && loadPreview()), [live, patientId, loadPreview]);
  useEffect(() => void loadCanned().then(setCanned).catch(() => {}), []);

  const slash = /^\/([\w-]*)$/.exec(text);
  const matches = slash ? canned.filter((c) => c.shortcut.startsWith(slash[1]!.toLowerCase())) : [];
  const showCanned = matches.length > 0;

  const insert = (response: CannedResponse) => {
    setText(response.body);
    setPick(0);
    box.current?.focus();
  };

  const send = async () => {
    const body = text.trim();
    if (!body || busy) return;
    setBusy(true);
    setError(null);
    try {
      if (mode === 'note') await api('POST', `/api/patients/${patientId}/notes`, { note: body });
      else await api('POST', `/api/patients/${patientId}/messages`, { body, idempotencyKey: idempotencyKey.current });
      setText('');
      idempotencyKey.current = crypto.randomUUID();
      // The coordinator may have switched patients while this was in flight: the sent text is no longer a draft.
      if (drafts.get(patientId)?.text.trim() === body) drafts.set(patientId, { text: '', mode, idempotencyKey: idempotencyKey.current });
      onSent();
    } catch (caught) {
      setError(caught instanceof ApiError ? caught.message : 'Not sent; check your connection and try again.');
    } finally {
      setBusy(false);
    }
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (showCanned) {
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        setPick((p) => (p + (event.key === 'ArrowDown' ? 1 : matches.length - 1)) % matches.length);
        return;
      }
      if (event.key === 'Enter' || event.key === 'Tab') {
        event.preventDefault();
        insert(matches[Math.min(pick, matches.length - 1)]!);
        return;
      }
      if (event.key === 'Escape') {
        setText(text + ' ');
        return;
      }
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      void send();
    }
  };

  const warnings = preview ? previewWarnings(preview) : [];
  const cannotSend = mode === 'reply' && preview !== null && !preview.ok;
  const recipient = patientLabel || 'this patient';
  const sendLabel = mode === 'note' ? 'Save note' : preview?.ok ? `Send to ${recipient} via ${channelLabel(preview.channel)}` : `Send to ${recipient}`;
  // data-no-shortcuts: keys typed anywhere in here, the mode buttons included, never reach the inbox shortcuts (App.tsx).
  return (
    <div className={`composer ${mode}`} data-mode={mode} data-no-shortcuts="">
      <div className="composer-tabs" role="group" aria-label="Compose">
        <button type="button" className={mode === 'reply' ? 'chip reply-chip active' : 'chip reply-chip'} aria-pressed={mode === 'reply'} onClick={() => chooseMode('reply')}>
          Reply
        </button>
        <button type="button" className={mode === 'note' ? 'chip note-chip active' : 'chip note-chip'} aria-pressed={mode === 'note'} onClick={() => chooseMode('note')}>
          Private note
        </button>
        <span className="via" id="composer-via">
          {mode === 'note'
            ? 'Private note: visible to coordinators only, never sent to the patient.'
            : preview === null
              ? ''
              : preview.ok
                ? `via ${channelLabel(preview.channel)}${preview.lastInboundAt ? `, last used ${formatAgo(preview.lastInboundAt, now)}` : ` (${preview.reason})`}`
                : ''}
        </span>
      </div>
      {mode === 'reply' && (cannotSend || warnings.length > 0) && (
        <div className="warning" role="alert">
          {cannotSend && <p>Cannot reply: {preview!.reason}</p>}
          {warnings.map((w) => (
            <p key={w}>{w}</p>
          ))}
        </div>
      )}
      {showCanned && (
        <ul className="canned" role="listbox" id="canned-list" aria-label="Canned responses">
          {matches.map((c, i) => (
            <li key={c.id} role="option" aria-selected={i === pick} className={i === pick ? 'active' : ''} onMouseDown={(e) => (e.preventDefault(), insert(c))}>
              <strong>/{c.shortcut}</strong> {c.title}
            </li>
          ))}
        </ul>
      )}
      <label htmlFor="composer-text" className="visually-hidden">
        {mode === 'note' ? 'Private note' : 'Reply to the patient'}
      </label>
      <textarea
        id="composer-text"
        ref={box}
        rows={3}
        value={text}
        placeholder={mode === 'note' ? 'Write a private note…' : 'Type a reply; Enter sends, Shift+Enter adds a line, / inserts a canned response'}
        aria-describedby="composer-via"
        aria-controls={showCanned ? 'canned-list' : undefined}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={onKeyDown}
        disabled={cannotSend}
      />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="composer-actions">
        <button type="button" className={mode === 'note' ? 'save-note' : 'send-reply'} onClick={() => void send()} disabled={busy || !text.trim() || cannotSend}>
          {sendLabel}
        </button>
      </div>
    </div>
  );
}
