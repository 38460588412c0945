import { useCallback, useEffect, useRef, useState, type KeyboardEvent } from 'react';
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

export function Composer({ patientId, live, now, onSent }: { patientId: string; live: Live; now: number; onSent(): void }) {
  const [text, setText] = useState('');
  const [mode, setMode] = useState<'reply' | 'note'>('reply');
  const [preview, setPreview] = useState<ReplyChannelPreview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [canned, setCanned] = useState<CannedResponse[]>([]);
  const [pick, setPick] = useState(0);
  const idempotencyKey = useRef(crypto.randomUUID());
  const box = useRef<HTMLTextAreaElement>(null);

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
  return (
    <div className={`composer ${mode}`}>
      <div className="composer-tabs" role="group" aria-label="Compose">
        <button type="button" className={mode === 'reply' ? 'chip active' : 'chip'} aria-pressed={mode === 'reply'} onClick={() => setMode('reply')}>
          Reply
        </button>
        <button type="button" className={mode === 'note' ? 'chip active' : 'chip'} aria-pressed={mode === 'note'} onClick={() => setMode('note')}>
          Private note
        </button>
        <span className="via" id="composer-via">
          {mode === 'note'
            ? 'Visible to coordinators only; never sent to the patient.'
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
        <button type="button" onClick={() => void send()} disabled={busy || !text.trim() || cannotSend}>
          {mode === 'note' ? 'Add note' : 'Send'}
        </button>
      </div>
    </div>
  );
}
