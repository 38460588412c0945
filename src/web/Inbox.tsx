import { useCallback, useEffect, useRef, useState } from 'react';
import { api } from './api.ts';
import type { Directory, Live } from './App.tsx';
import { CHANNEL_ICONS, channelLabel, formatAgo, formatDuration } from './format.ts';
import type { Conversation, Me } from './types.ts';

const FILTERS = [
  { id: 'all', label: 'All' },
  { id: 'mine', label: 'Mine' },
  { id: 'unread', label: 'Unread' },
  { id: 'waiting', label: 'Waiting' },
  { id: 'team', label: 'Team queue' },
] as const;
type FilterId = (typeof FILTERS)[number]['id'];

export function Inbox(props: {
  me: Me;
  live: Live;
  now: number;
  selected: string | null;
  directory: Directory;
  onOpen(patientId: string): void;
  onOrder(ids: string[]): void;
  onNotify(message: string): void;
}) {
  const { live, now, selected, onOpen, onOrder, onNotify, me } = props;
  const [filter, setFilter] = useState<FilterId>('all');
  const [query, setQuery] = useState('');
  const [debounced, setDebounced] = useState('');
  const [rows, setRows] = useState<Conversation[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const known = useRef(new Set<string>());
  const pendingHandoffs = useRef(new Set<string>());

  useEffect(() => {
    const timer = setTimeout(() => setDebounced(query.trim()), 250);
    return () => clearTimeout(timer);
  }, [query]);

  const load = useCallback(async () => {
    const params = new URLSearchParams({ filter });
    if (debounced) params.set('q', debounced);
    try {
      const result = await api<{ conversations: Conversation[] }>('GET', `/api/conversations?${params}`);
      setRows(result.conversations);
      setError(null);
      for (const row of result.conversations) {
        if (pendingHandoffs.current.has(row.patientId) && !known.current.has(row.patientId)) {
          onNotify(`${row.displayName ?? row.address ?? 'A patient'} was handed off to you.`);
        }
        known.current.add(row.patientId);
      }
      pendingHandoffs.current.clear();
    } catch {
      setError('Could not load conversations; retrying on the next update.');
    }
  }, [filter, debounced, onNotify]);

  useEffect(() => {
    void load();
  }, [load]);

  // Coalesce bursts of live events into one reload.
  const reloadTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () =>
      live.subscribe((event) => {
        if (event.type === 'activity' && event.kind === 'handoff' && event.patientId) pendingHandoffs.current.add(event.patientId);
        if (event.type === 'gone' && event.patientId) setRows((current) => current?.filter((row) => row.patientId !== event.patientId) ?? current);
        if (reloadTimer.current) return;
        reloadTimer.current = setTimeout(() => {
          reloadTimer.current = null;
          void load();
        }, 100);
      }),
    [live, load],
  );

  // Opening a thread moves the read position: reload so its unread badge clears.
  useEffect(() => {
    const onRead = () => void load();
    window.addEventListener('switchboard:read', onRead);
    return () => window.removeEventListener('switchboard:read', onRead);
  }, [load]);

  useEffect(() => {
    onOrder(rows?.map((row) => row.patientId) ?? []);
  }, [rows, onOrder]);

  return (
    <section className="inbox" aria-labelledby="inbox-title">
      <div className="inbox-head">
        <h2 id="inbox-title">Conversations</h2>
        <label htmlFor="inbox-search" className="visually-hidden">
          Search by name, phone or message
        </label>
        <input id="inbox-search" type="search" placeholder="Search name, phone, message…" value={query} onChange={(e) => setQuery(e.target.value)} />
        <div className="filters" role="group" aria-label="Filter conversations">
          {FILTERS.map((f) => (
            <button key={f.id} type="button" className={filter === f.id ? 'chip active' : 'chip'} aria-pressed={filter === f.id} onClick={() => setFilter(f.id)}>
              {f.label}
            </button>
          ))}
        </div>
      </div>
      {error && <p className="error">{error}</p>}
      {rows === null ? (
        <p className="muted">Loading…</p>
      ) : rows.length === 0 ? (
        <p className="muted">No conversations{debounced ? ' match your search' : ''}.</p>
      ) : (
        <ul className="conversation-list" aria-label="Conversations, oldest waiting first">
          {rows.map((row) => {
            const name = row.displayName ?? row.address ?? 'Unknown patient';
            const channel = row.lastMessage?.channel ?? null;
            const waiting = row.waitingSince ? formatDuration(now - new Date(row.waitingSince).getTime()) : null;
            const owner = row.coordinatorId === null ? `Team queue: ${props.directory.teamName(row.teamId)}` : row.coordinatorId !== me.id ? `Assigned to ${props.directory.nameOf(row.coordinatorId)}` : null;
            return (
              <li key={row.patientId}>
                <button
                  type="button"
                  className={`conversation ${selected === row.patientId ? 'selected' : ''} ${row.unread > 0 ? 'unread' : ''}`}
                  data-patient-id={row.patientId}
                  aria-current={selected === row.patientId ? 'true' : undefined}
                  onClick={() => onOpen(row.patientId)}
                >
                  <span className="row1">
                    <span className="channel-icon" title={channelLabel(channel)} aria-label={`via ${channelLabel(channel)}`}>
                      {CHANNEL_ICONS[channel ?? ''] ?? '•'}
                    </span>
                    <span className="name">{name}</span>
                    {row.priority > 0 && (
                      <span className="priority" aria-label={`priority ${row.priority}`}>
                        P{row.priority}
                      </span>
                    )}
                    {row.unread > 0 && (
                      <span className="unread-count" aria-label={`${row.unread} unread`}>
                        {row.unread >= 99 ? '99+' : row.unread}
                      </span>
                    )}
                  </span>
                  <span className="preview">
                    {row.lastMessage ? `${row.lastMessage.direction === 'outbound' ? 'You: ' : ''}${row.lastMessage.body}` : 'No messages yet'}
                  </span>
                  <span className="row3">
                    {waiting ? (
                      <span className="waiting" aria-label={`waiting ${waiting}`}>
                        Waiting {waiting}
                      </span>
                    ) : (
                      <span className="muted">{formatAgo(row.lastMessageAt, now)}</span>
                    )}
                    {row.tags.map((tag) => (
                      <span key={tag} className="tag">
                        {tag}
                      </span>
                    ))}
                    {owner && <span className="owner">{owner}</span>}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
