import { Fragment, useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api, ApiError } from './api.ts';
import type { Directory, Live } from './App.tsx';
import { Composer, type Drafts } from './Composer.tsx';
import { CHANNEL_ICONS, channelLabel, formatTime } from './format.ts';
import { HandoffDialog } from './HandoffDialog.tsx';
import type { EventItem, Me, MessageItem, TimelineItem, TimelinePage } from './types.ts';

const PAGE = 50;

export function Thread(props: { me: Me; patientId: string; live: Live; now: number; directory: Directory; drafts: Drafts; onClose(): void; onNotify(message: string): void }) {
  const { patientId, live, directory } = props;
  const [items, setItems] = useState<TimelineItem[]>([]);
  const [nextBefore, setNextBefore] = useState<number | null>(null);
  const [state, setState] = useState<'loading' | 'ready' | 'missing' | 'gone'>('loading');
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [handoffOpen, setHandoffOpen] = useState(false);
  const [title, setTitle] = useState<string>('');
  const scroller = useRef<HTMLDivElement>(null);
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const stickToBottom = useRef(true);
  const readSeq = useRef(0);
  const pagedFrom = useRef(false);

  const merge = useCallback((incoming: TimelineItem[]) => {
    setItems((current) => {
      const bySeq = new Map(current.map((item) => [item.seq, item]));
      for (const item of incoming) bySeq.set(item.seq, item);
      return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    });
  }, []);

  const loadNewest = useCallback(async () => {
    try {
      const page = await api<TimelinePage>('GET', `/api/patients/${patientId}/timeline?limit=${PAGE}`);
      merge(page.items);
      // Only the first page sets where older history starts; later refreshes of the newest page must not.
      if (!pagedFrom.current) {
        pagedFrom.current = true;
        setNextBefore(page.nextBefore);
      }
      setState('ready');
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) setState((s) => (s === 'gone' ? s : 'missing'));
    }
  }, [patientId, merge]);

  useEffect(() => {
    void loadNewest();
    void api<{ displayName: string | null; identities: Array<{ address?: unknown }> }>('GET', `/api/patients/${patientId}`)
      .then((panel) => setTitle(panel.displayName ?? String(panel.identities[0]?.address ?? 'Patient')))
      .catch(() => {});
  }, [patientId, loadNewest]);

  useEffect(
    () =>
      live.subscribe((event) => {
        if (event.type === 'gone' && event.patientId === patientId) setState('gone');
        else if (event.type === 'refresh' || (event.type === 'activity' && event.patientId === patientId)) void loadNewest();
      }),
    [live, patientId, loadNewest],
  );

  const loadOlder = useCallback(async () => {
    if (nextBefore === null || loadingOlder) return;
    setLoadingOlder(true);
    const el = scroller.current;
    if (el) anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    try {
      const page = await api<TimelinePage>('GET', `/api/patients/${patientId}/timeline?limit=${PAGE}&before=${nextBefore}`);
      merge(page.items);
      setNextBefore(page.nextBefore);
    } finally {
      setLoadingOlder(false);
    }
  }, [nextBefore, loadingOlder, patientId, merge]);

  // Keep the view where it was when older items are prepended; follow the bottom when new ones arrive.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (anchor.current) {
      el.scrollTop = anchor.current.top + (el.scrollHeight - anchor.current.height);
      anchor.current = null;
    } else if (stickToBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [items]);

  // Everything on screen counts as read.
  useEffect(() => {
    const last = items.at(-1);
    if (!last || last.seq <= readSeq.current || state !== 'ready') return;
    readSeq.current = last.seq;
    void api('POST', `/api/patients/${patientId}/read`, { seq: last.seq })
      .then(() => window.dispatchEvent(new Event('switchboard:read')))
      .catch(() => {});
  }, [items, patientId, state]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (el.scrollTop < 120) void loadOlder();
  };

  if (state === 'missing') {
    return (
      <div className="empty" role="alert">
        <h1>Conversation not found</h1>
        <p>It does not exist or is not yours to see.</p>
      </div>
    );
  }

  let previousChannel: string | null = null;
  return (
    <section className="thread" aria-labelledby="thread-title">
      <div className="thread-head">
        <button type="button" className="secondary back" onClick={props.onClose} aria-label="Back to conversations">
          ←
        </button>
        <h1 id="thread-title">{title || 'Conversation'}</h1>
        <button type="button" onClick={() => setHandoffOpen(true)} disabled={state === 'gone'}>
          Hand off…
        </button>
      </div>
      {state === 'gone' && (
        <p className="notice" role="alert">
          This patient was handed off and is no longer in your inbox.
        </p>
      )}
      <div className="timeline" ref={scroller} onScroll={onScroll} tabIndex={0} aria-label="Conversation timeline" role="log">
        {nextBefore !== null ? (
          <button type="button" className="link load-older" onClick={() => void loadOlder()} disabled={loadingOlder}>
            {loadingOlder ? 'Loading…' : 'Load older'}
          </button>
        ) : (
          state === 'ready' && <p className="muted center">Start of the conversation</p>
        )}
        <ol className="items">
          {items.map((item) => {
            if (item.type === 'message') {
              const switched = previousChannel !== null && previousChannel !== item.channel;
              previousChannel = item.channel;
              return (
                <Fragment key={item.seq}>
                  {switched && (
                    <li className="medium-switch" role="separator" aria-label={`Switched to ${channelLabel(item.channel)}`}>
                      <span>Switched to {channelLabel(item.channel)}</span>
                    </li>
                  )}
                  <MessageRow item={item} directory={directory} patientId={patientId} onChanged={() => void loadNewest()} onNotify={props.onNotify} />
                </Fragment>
              );
            }
            if (item.type === 'event') return <EventRow key={item.seq} item={item} directory={directory} />;
            return <GenericRow key={(item as { seq: number }).seq} item={item as unknown as Record<string, unknown>} />;
          })}
        </ol>
      </div>
      {state !== 'gone' && (
        <Composer key={patientId} patientId={patientId} patientLabel={title} drafts={props.drafts} live={live} now={props.now} onSent={() => ((stickToBottom.current = true), void loadNewest())} />
      )}
      {handoffOpen && (
        <HandoffDialog
          patientId={patientId}
          me={props.me}
          directory={directory}
          onClose={() => setHandoffOpen(false)}
          onDone={(to) => {
            setHandoffOpen(false);
            props.onNotify(`Handed off to ${to}.`);
          }}
        />
      )}
    </section>
  );
}

const STATUS_TEXT: Record<string, { glyph: string; text: string }> = {
  pending: { glyph: '◷', text: 'Sending' },
  sending: { glyph: '◷', text: 'Sending' },
  uncertain: { glyph: '?', text: 'Delivery uncertain — the provider may or may not have it' },
  queued: { glyph: '✓', text: 'Queued' },
  sent: { glyph: '✓', text: 'Sent' },
  delivered: { glyph: '✓✓', text: 'Delivered' },
  read: { glyph: '✓✓', text: 'Read' },
  undelivered: { glyph: '⚠', text: 'Not delivered' },
  failed: { glyph: '⚠', text: 'Failed' },
};

const RESOLUTIONS = [
  { resolution: 'resend', label: 'Resend', done: 'Sending it again.' },
  { resolution: 'delivered', label: 'It arrived', done: 'Marked as sent.' },
  { resolution: 'cancel', label: 'Cancel', done: 'Cancelled.' },
] as const;

function MessageRow(props: { item: MessageItem; directory: Directory; patientId: string; onChanged(): void; onNotify(message: string): void }) {
  const { item, directory } = props;
  const status = STATUS_TEXT[item.status] ?? { glyph: '', text: item.status };
  const failed = item.status === 'failed' || item.status === 'undelivered';
  const uncertain = item.direction === 'outbound' && item.status === 'uncertain';
  const [busy, setBusy] = useState(false);
  const resolve = async (choice: (typeof RESOLUTIONS)[number]) => {
    setBusy(true);
    try {
      await api('POST', `/api/patients/${props.patientId}/messages/${item.id}/delivery`, { resolution: choice.resolution });
      props.onNotify(choice.done);
    } catch (error) {
      // 409: someone else decided first; the refreshed thread shows what they chose.
      props.onNotify(error instanceof ApiError && error.status === 409 ? 'Someone already decided about this message.' : 'That did not work; try again.');
    } finally {
      setBusy(false);
      props.onChanged();
    }
  };
  return (
    <li className={`message ${item.direction}`} data-seq={item.seq}>
      <div className="bubble">
        <div className="meta">
          <span className={`badge channel-${item.channel}`}>
            <span aria-hidden="true">{CHANNEL_ICONS[item.channel] ?? '•'}</span> {channelLabel(item.channel)}
          </span>
          {item.direction === 'outbound' && <span className="author">{item.authorId ? directory.nameOf(item.authorId) : 'Automatic'}</span>}
          <time dateTime={item.at}>{formatTime(item.at)}</time>
        </div>
        <p className="body">{item.body}</p>
        {item.direction === 'outbound' && (
          <p className={`status status-${item.status}`} data-status={item.status}>
            <span aria-hidden="true">{status.glyph}</span> {status.text}
            {failed && (item.errorMessage || item.errorCode) && <span className="reason">: {item.errorMessage ?? `error ${item.errorCode}`}</span>}
          </p>
        )}
        {uncertain && (
          <div className="delivery-decision" role="group" aria-label="Delivery uncertain: decide">
            {RESOLUTIONS.map((choice) => (
              <button key={choice.resolution} type="button" className="secondary" disabled={busy} onClick={() => void resolve(choice)}>
                {choice.label}
              </button>
            ))}
          </div>
        )}
      </div>
    </li>
  );
}

function EventRow({ item, directory }: { item: EventItem; directory: Directory }) {
  const detail = (item.detail && typeof item.detail === 'object' ? item.detail : {}) as Record<string, unknown>;
  if (item.kind === 'note') {
    return (
      <li className="note" data-seq={item.seq}>
        <p className="meta">
          <strong>Private note</strong> · {directory.nameOf(item.actorId)} · <time dateTime={item.at}>{formatTime(item.at)}</time>
        </p>
        <p className="body">{item.note}</p>
      </li>
    );
  }
  let text: string;
  if (item.kind === 'handoff') {
    const to = typeof detail.toTeamId === 'string' ? `the ${directory.teamName(detail.toTeamId)} queue` : directory.nameOf(item.toCoordinatorId);
    text = `${directory.nameOf(item.actorId)} handed off from ${directory.nameOf(item.fromCoordinatorId)} to ${to}`;
  } else if (item.kind === 'assigned') {
    text = `Assigned to ${item.toCoordinatorId ? directory.nameOf(item.toCoordinatorId) : typeof detail.teamId === 'string' ? directory.teamName(detail.teamId) : 'a queue'}${typeof detail.reason === 'string' ? ` (${detail.reason})` : ''}`;
  } else if ((item.kind === 'routed' || item.kind === 'escalated') && detail.assignment && typeof detail.assignment === 'object') {
    // A routing decision (routing branch): who got the patient, with the engine's own explanation below.
    const assignment = detail.assignment as { kind?: string; coordinatorId?: string; teamId?: string };
    const to = assignment.coordinatorId ? directory.nameOf(assignment.coordinatorId) : assignment.teamId ? `the ${directory.teamName(assignment.teamId)} queue` : 'a queue';
    text = `${item.kind === 'routed' ? 'Routed' : 'Escalated'} to ${to}${typeof detail.ruleName === 'string' ? ` by “${detail.ruleName}”` : ''}`;
  } else {
    text = humanize(item.kind);
  }
  const routing = item.kind === 'routed' || item.kind === 'escalated';
  const extra =
    item.kind === 'handoff' || item.kind === 'assigned'
      ? []
      : routing
        ? Object.entries(detail).filter(([key]) => key === 'explanation')
        : Object.entries(detail);
  return (
    <li className={`event event-${item.kind}`} data-seq={item.seq}>
      <p>
        <span className="event-text">{text}</span> · <time dateTime={item.at}>{formatTime(item.at)}</time>
      </p>
      {item.note && <p className="event-note">“{item.note}”</p>}
      {extra.length > 0 && <DetailList entries={extra} />}
    </li>
  );
}

/** A timeline item of a type this app does not know yet: shown, as text, rather than dropped. */
function GenericRow({ item }: { item: Record<string, unknown> }) {
  return (
    <li className="event">
      <p>{humanize(String(item.type ?? 'item'))}</p>
      <DetailList entries={Object.entries(item).filter(([key]) => !['type', 'seq', 'id'].includes(key))} />
    </li>
  );
}

function DetailList({ entries }: { entries: Array<[string, unknown]> }) {
  return (
    <dl className="detail">
      {entries.slice(0, 12).map(([key, value]) => (
        <Fragment key={key}>
          <dt>{humanize(key)}</dt>
          <dd>{typeof value === 'string' ? value : JSON.stringify(value)?.slice(0, 300)}</dd>
        </Fragment>
      ))}
    </dl>
  );
}

const humanize = (kind: string) => {
  const spaced = kind.replace(/[_.-]+/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
};
