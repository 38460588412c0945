import type { ServerResponse } from 'node:http';
import { parseCookie } from 'cookie';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Coordinator } from '../db/coordinators.ts';
import { activitySince, latestActivityId, pruneActivity } from '../db/inbox.ts';
import { ACTIVITY_CHANNEL, SESSIONS_REVOKED_CHANNEL } from '../db/notify.ts';
import { liveCredentials, sessionCredential, tokenCredential } from '../db/web-sessions.ts';
import { canSeePatient, viewersOfPatient, visiblePatientIds } from '../db/visibility.ts';
import { acquireStreamSlot, CONNECTION_LIMIT_DEFAULTS, ConnectionCounter } from './connection-limits.ts';
import { parseInput, type AppDeps } from './server.ts';
import { CALLER, callerOf, policy } from './policy.ts';
import { SESSION_COOKIE } from './session-api.ts';

/** The credential the request authenticated with, as policy.ts's onRequest hook chose it (bearer first, else the cookie). */
function credentialOf(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return tokenCredential(header.slice(7).trim());
  const sessionId = request.headers.cookie ? parseCookie(request.headers.cookie)[SESSION_COOKIE] : undefined;
  return sessionCredential(sessionId ?? '');
}

interface LiveClient {
  caller: Coordinator;
  /** The session or token that opened the stream ('session:<sha256>' / 'token:<sha256>'): when it is revoked, the stream ends. */
  credential: string;
  raw: ServerResponse;
  /** Patients this client may have on screen: when one stops being visible it is told `gone` (and nothing else). */
  seen: Set<string>;
}

const LiveQuery = z.object({ after: z.coerce.number().int().min(0).optional() });
const CATCH_UP_LIMIT = 1000;
const HEARTBEAT_MS = 15_000;

/**
 * Live updates as Server-Sent Events. Every web process LISTENs on switchboard_activity, so a change committed
 * by any process (a webhook here, the relay's status there) reaches every browser on every process. Each event
 * is sent only to clients whose coordinator may see that patient (one visibility query per event for all of
 * this process's clients). Payloads are ids and a kind, never PHI; the app fetches what changed through the
 * audited API. Each event's SSE id is its activity_feed id, so a reconnecting EventSource sends Last-Event-ID
 * and gets what it missed.
 */
export async function registerLiveRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  const clients = new Set<LiveClient>();
  const limits = { ...CONNECTION_LIMIT_DEFAULTS, ...deps.connectionLimits };
  const streams = new ConnectionCounter({ perKey: limits.liveStreamsPerCoordinator, total: limits.liveStreamsPerProcess });
  const send = (client: LiveClient, event: string, data: unknown, id?: number) => {
    client.raw.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  // Notifications are handled one at a time, in arrival order, so a client never sees a status before its message.
  let queue: Promise<void> = Promise.resolve();
  const dispatch = async (payload: string) => {
    let event: { patientId: string; kind: string; id?: number };
    try {
      event = JSON.parse(payload);
    } catch {
      return;
    }
    if (clients.size === 0 || typeof event.patientId !== 'string') return;
    const viewers = await viewersOfPatient(db, event.patientId, [...clients].map((client) => client.caller.id));
    for (const client of clients) {
      if (viewers.has(client.caller.id)) {
        client.seen.add(event.patientId);
        send(client, 'activity', { patientId: event.patientId, kind: event.kind }, event.id);
      } else if (client.seen.delete(event.patientId)) {
        send(client, 'gone', { patientId: event.patientId }, event.id);
      }
    }
  };
  const unlisten = await db.listen(
    ACTIVITY_CHANNEL,
    (payload) => {
      queue = queue.then(() => dispatch(payload)).catch((error: unknown) => app.log.warn({ err: error }, 'live dispatch failed'));
    },
    {
      // Events were missed while the LISTEN connection was down: end every stream, and each client reconnects
      // with its Last-Event-ID and replays what it missed from the activity table.
      onReconnect: () => {
        for (const client of clients) client.raw.end();
        clients.clear();
      },
    },
  );

  // A logout, sign-out-everywhere, disabled account or password reset on any process ends the matching streams
  // here at once: a revoked credential must not keep receiving events.
  const end = (client: LiveClient) => {
    clients.delete(client);
    client.raw.end();
  };
  const unlistenRevoked = await db.listen(SESSIONS_REVOKED_CHANNEL, (payload) => {
    let revoked: Partial<{ coordinatorId: string; credential: string }>;
    try {
      revoked = JSON.parse(payload);
    } catch {
      return;
    }
    for (const client of clients) {
      if (client.caller.id === revoked.coordinatorId || client.credential === revoked.credential) end(client);
    }
  });

  let beats = 0;
  const heartbeat = setInterval(() => {
    for (const client of clients) client.raw.write(': keep-alive\n\n');
    // Backstop for a missed notification (a listener reconnecting) or an expiry: re-check every stream's credential.
    if (clients.size > 0) {
      const open = [...clients];
      liveCredentials(db, open.map((client) => client.credential))
        .then((valid) => {
          for (const client of open) if (!valid.has(client.credential)) end(client);
        })
        .catch((error: unknown) => app.log.warn({ err: error }, 'live credential check failed'));
    }
    // Resume tokens older than a day are not worth keeping: such a client reloads anyway.
    if (++beats % 240 === 0) pruneActivity(db).catch(() => {});
  }, deps.liveHeartbeatMs ?? HEARTBEAT_MS);
  heartbeat.unref();

  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    for (const client of clients) client.raw.end();
    clients.clear();
    await unlisten();
    await unlistenRevoked();
  });

  app.get('/api/live', policy(CALLER), async (request, reply) => {
    const caller = callerOf(request);
    const { after } = parseInput(LiveQuery, request.query);
    const lastEventId = Number(request.headers['last-event-id']);
    const resumeFrom = Number.isInteger(lastEventId) && lastEventId >= 0 ? lastEventId : after;
    // Over a cap the new stream is refused (429), before the hijack, so the error handler still answers it.
    acquireStreamSlot(streams, caller.id, reply.raw, {
      perKey: `at most ${limits.liveStreamsPerCoordinator} live streams per user are open at once; close another tab and retry`,
      perProcess: 'this server has too many live streams open; retry shortly',
    });

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    raw.write('retry: 1000\n\n');
    const client: LiveClient = { caller, credential: credentialOf(request), raw, seen: new Set() };
    // Joined before the catch-up query, so nothing committed meanwhile falls between the two.
    clients.add(client);
    raw.on('close', () => clients.delete(client));
    try {
      for (const id of await visiblePatientIds(db, caller)) client.seen.add(id);
      if (resumeFrom === undefined) {
        send(client, 'hello', { resumed: false }, await latestActivityId(db));
        return;
      }
      const missed = await activitySince(db, resumeFrom, CATCH_UP_LIMIT);
      if (missed.more) {
        // Too much to replay one by one: the app reloads its lists instead.
        send(client, 'reset', { reason: 'too many missed changes' }, await latestActivityId(db));
        return;
      }
      const visible = new Map<string, boolean>();
      for (const item of missed.items) {
        if (!visible.has(item.patientId)) visible.set(item.patientId, await canSeePatient(db, caller, item.patientId));
        if (visible.get(item.patientId)) send(client, 'activity', { patientId: item.patientId, kind: item.kind, replayed: true }, item.id);
        else if (client.seen.delete(item.patientId)) send(client, 'gone', { patientId: item.patientId }, item.id);
      }
      send(client, 'hello', { resumed: true, replayed: missed.items.length });
    } catch (error) {
      request.log.warn({ err: error }, 'live catch-up failed');
      raw.end();
    }
  });
}
