import { randomUUID } from 'node:crypto';
import fastifyWebsocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from '@fastify/websocket';
import { z } from 'zod';
import type { CallSettings } from '../calls/settings.ts';
import { renderVisitPage, VISIT_PAGE_CSP, VISIT_PAGE_SCRIPT, VISIT_PAGE_STYLE } from '../calls/visit-page.ts';
import { appendAudit } from '../db/audit.ts';
import { parseCookie } from 'cookie';
import type { Coordinator } from '../db/coordinators.ts';
import { touchWebSession } from '../db/web-sessions.ts';
import { DEFAULT_SESSION_IDLE_MS, SESSION_COOKIE } from './session-api.ts';
import { createOutbound } from '../db/messages.ts';
import { canSeePatient } from '../db/visibility.ts';
import { joinVisitSignaling, leaveVisitSignaling, parseVisitSignalNotice, recordVisitConsent, relayVisitSignal, takeVisitSignal, VISIT_SIGNALS_CHANNEL, type VisitSide } from '../db/visit-signals.ts';
import { completeVisitRecording, createVisit, findVisit, findVisitByToken, listChunks, recordChunk, setInviteMessage, type VisitRow } from '../db/visits.ts';
import { AppError, BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';
import { CONNECTION_LIMIT_DEFAULTS } from './connection-limits.ts';
import { PATIENT, PUBLIC, callerOf, patientRoute, policy, requirePatientVisible, type RoutePolicy } from './policy.ts';

/** A visit's routes: any coordinator who may see the visit's patient (the handler looks the visit up). */
const VISIT = { auth: 'caller', scope: { handler: "the visit's patient" } } as const satisfies RoutePolicy;

const IdParams = z.object({ id: z.string().max(64) });
const ChunkParams = z.object({ id: z.string().max(64), index: z.coerce.number().int().min(0).max(100_000) });
// chunkCount omitted: assemble what the server kept (the contiguous run from chunk 0), e.g. after the tab closed mid-visit.
const CompleteBody = z.object({ chunkCount: z.number().int().min(1).max(100_001).optional() });
// The coordinator's side is authenticated by the session cookie on the upgrade request; a token in its hello is ignored.
const Hello = z.object({ type: z.literal('hello'), role: z.enum(['coordinator', 'patient']), token: z.string().min(1).max(200).optional() });
const ClientMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('consent') }),
  z.object({ type: z.literal('signal'), data: z.unknown() }),
  z.object({ type: z.literal('bye') }),
]);
const WEBM_TYPES = new Set(['video/webm', 'audio/webm']);
const EBML_MAGIC = Buffer.from([0x1a, 0x45, 0xdf, 0xa3]);
const MAX_QUEUED_SIGNALS = 500;

/**
 * Video visits: a coordinator starts one from the thread; the patient gets an expiring join link on their
 * last-used medium, like any reply; the two browsers talk WebRTC, with the web processes relaying signaling over
 * a WebSocket and through PostgreSQL, so the two sides may be on different processes. Recording needs
 * both sides' consent, logged on the visit and in the audit log; chunks upload resumably and are assembled,
 * then transcribed by the worker like a call recording.
 */
export async function registerVisitRoutes(app: FastifyInstance, deps: AppDeps & { calls?: CallSettings }): Promise<void> {
  const settings = deps.calls;
  if (!settings) return;
  const { db } = deps;
  const visitSettings = settings.visits;
  const limits = { ...CONNECTION_LIMIT_DEFAULTS, ...deps.connectionLimits };
  // Open signaling sockets of this process, hello or not. Per visit side no cap is needed: a join replaces the
  // side's previous socket (closed with `replaced`), and a socket that never joins is closed at the hello deadline.
  let openSockets = 0;

  // Signaling state is in the database (src/db/visit-signals.ts), so the coordinator and the patient may be on
  // different web processes; this process keeps only its own sockets. One LISTEN per process: a notice names a
  // connection, and only the process holding it reads the signal row and sends it.
  const connections = new Map<string, LocalConnection>();
  const unlisten = await db.listen(VISIT_SIGNALS_CHANNEL, (payload) => {
    const notice = parseVisitSignalNotice(payload);
    const local = notice ? connections.get(notice.connectionId) : undefined;
    if (!notice || !local) return;
    local.deliveries = local.deliveries
      .then(async () => {
        if ('replaced' in notice) {
          connections.delete(local.id);
          local.socket.send(JSON.stringify({ type: 'replaced' }));
          local.socket.close(1000, 'replaced by a new connection');
          return;
        }
        const body = await takeVisitSignal(db, notice.signalId, local.id);
        if (body !== null && local.socket.readyState === local.socket.OPEN) local.socket.send(body);
      })
      .catch((error: unknown) => app.log.warn({ err: error, visitId: local.visitId }, 'visit signal delivery failed'));
  });
  const leave = (local: LocalConnection): Promise<void> =>
    (local.left ??= (async () => {
      await local.joined.catch(() => {});
      connections.delete(local.id);
      await leaveVisitSignaling(db, { visitId: local.visitId, side: local.side, connectionId: local.id });
    })()
      .catch((error: unknown) => app.log.warn({ err: error, visitId: local.visitId }, 'leaving visit signaling failed'))
      .finally(() => held.delete(local)));
  // Every connection that joined and has not yet left, replaced ones included (their leave drops their signals).
  const held = new Set<LocalConnection>();
  app.addHook('onClose', async () => {
    // The server's sockets are gone: say so, or the peer's process would keep addressing them.
    await Promise.all([...held].map(leave));
    await unlisten().catch(() => {});
  });

  async function requireVisit(request: FastifyRequest, id: string): Promise<{ caller: Coordinator; visit: VisitRow }> {
    const caller = callerOf(request);
    const visit = await findVisit(db, id);
    if (!visit) throw new NotFoundError('visit');
    await requirePatientVisible(db, caller, visit.patientId, 'visit');
    return { caller, visit };
  }

  app.post('/api/patients/:id/visits', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    const { visit, token } = await createVisit(db, { patientId, coordinatorId: caller.id, ttlMs: visitSettings.linkTtlMs });
    const joinUrl = `${deps.publicBaseUrl}/visit/${visit.id}#t=${token}`;
    const minutes = Math.round(visitSettings.linkTtlMs / 60_000);
    const sent = await createOutbound(db, {
      patientId,
      authorId: caller.id,
      body: `Your care coordinator invites you to a video visit (recorded, with your consent). Join within ${minutes} minutes: ${joinUrl}`,
      idempotencyKey: `visit-invite-${visit.id}`,
    });
    if ('error' in sent) throw new ConflictError(sent.error, sent.reason);
    await setInviteMessage(db, visit.id, sent.messageId);
    await appendAudit(db, { actorId: caller.id, action: 'visit.create', patientId, detail: { visitId: visit.id, inviteMessageId: sent.messageId, channel: sent.channel }, ip: request.ip });
    return reply.status(201).send({ visitId: visit.id, seq: visit.seq, hostUrl: `${deps.publicBaseUrl}/visits/${visit.id}/host`, expiresAt: visit.expiresAt, invite: { messageId: sent.messageId, channel: sent.channel } });
  });

  // The host page signs in with the web app's session cookie (the WebSocket checks it), never an API token in the URL.
  const page = (reply: FastifyReply, type: string, body: string) =>
    reply.type(type).header('content-security-policy', VISIT_PAGE_CSP).header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer').header('cache-control', 'no-store').send(body);
  app.get('/visits/:id/host', policy(PUBLIC), async (_request, reply) => page(reply, 'text/html; charset=utf-8', renderVisitPage('coordinator', { iceServers: visitSettings.iceServers })));
  app.get('/visit/:id', policy(PUBLIC), async (_request, reply) => page(reply, 'text/html; charset=utf-8', renderVisitPage('patient', { iceServers: visitSettings.iceServers })));
  app.get('/visits/assets/visit.js', policy(PUBLIC), async (_request, reply) => page(reply, 'text/javascript; charset=utf-8', VISIT_PAGE_SCRIPT));
  app.get('/visits/assets/visit.css', policy(PUBLIC), async (_request, reply) => page(reply, 'text/css; charset=utf-8', VISIT_PAGE_STYLE));

  app.get('/api/visits/:id/recording/chunks', policy(VISIT), async (request) => {
    const { id } = parseInput(IdParams, request.params);
    const { visit } = await requireVisit(request, id);
    return { visitId: visit.id, chunks: await listChunks(db, visit.id) };
  });

  await app.register(async (scope) => {
    // Encapsulated: raw chunk bodies and the WebSocket plugin apply to these routes only.
    scope.addContentTypeParser([...WEBM_TYPES], { parseAs: 'buffer', bodyLimit: visitSettings.maxChunkBytes }, (_request, body, done) => done(null, body));
    await scope.register(fastifyWebsocket, { options: { maxPayload: 256 * 1024 } });

    scope.put('/api/visits/:id/recording/chunks/:index', { bodyLimit: visitSettings.maxChunkBytes, ...policy(VISIT) }, async (request, reply) => {
      const { id, index } = parseInput(ChunkParams, request.params);
      const { visit } = await requireVisit(request, id);
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (!WEBM_TYPES.has(type) || !Buffer.isBuffer(request.body)) throw new AppError(415, 'unsupported_media_type', 'chunks must be video/webm or audio/webm');
      if (index === 0 && !request.body.subarray(0, 4).equals(EBML_MAGIC)) throw new BadRequestError('not_webm', 'the first chunk is not a WebM file');
      if (!visit.coordinatorConsentAt || !visit.patientConsentAt) throw new ConflictError('consent_required', 'both sides must consent before a visit is recorded');
      if (visit.status === 'ended') throw new ConflictError('visit_ended', 'the visit has ended');
      const stored = await listChunks(db, visit.id);
      const total = stored.filter((chunk) => chunk.index !== index).reduce((sum, chunk) => sum + chunk.sizeBytes, 0) + request.body.length;
      if (total > visitSettings.maxRecordingBytes) throw new AppError(413, 'payload_too_large', `a visit recording may not exceed ${visitSettings.maxRecordingBytes} bytes`);
      const body = request.body;
      await settings.storage.put(chunkKey(visit.id, index), (async function* () { yield body; })(), { maxBytes: visitSettings.maxChunkBytes });
      await recordChunk(db, visit.id, index, body.length);
      return reply.status(204).send();
    });

    scope.post('/api/visits/:id/recording/complete', policy(VISIT), async (request, reply) => {
      const { id } = parseInput(IdParams, request.params);
      const { caller, visit } = await requireVisit(request, id);
      const body = parseInput(CompleteBody, request.body ?? {});
      const have = new Set((await listChunks(db, visit.id)).map((chunk) => chunk.index));
      let chunkCount = body.chunkCount ?? 0;
      if (body.chunkCount === undefined) while (have.has(chunkCount)) chunkCount++;
      if (chunkCount === 0) throw new ConflictError('chunks_missing', 'no chunk of this visit was uploaded');
      const missing = Array.from({ length: chunkCount }, (_, i) => i).filter((i) => !have.has(i));
      if (missing.length > 0) throw new ConflictError('chunks_missing', `chunks not yet uploaded: ${missing.slice(0, 20).join(', ')}`);
      const storageKey = `visits/${visit.id}/recording.webm`;
      const storage = settings.storage;
      const { sizeBytes } = await storage.put(
        storageKey,
        (async function* () {
          for (let i = 0; i < chunkCount; i++) yield* storage.read(chunkKey(visit.id, i)) as AsyncIterable<Uint8Array>;
        })(),
        { maxBytes: visitSettings.maxRecordingBytes },
      );
      const result = await completeVisitRecording(db, { visit, storageKey, contentType: 'video/webm', sizeBytes, transcribeMaxAttempts: visitSettings.transcribeMaxAttempts });
      await appendAudit(db, { actorId: caller.id, action: 'visit.recording.complete', patientId: visit.patientId, detail: { visitId: visit.id, recordingId: result.recordingId, chunks: chunkCount, sizeBytes }, ip: request.ip });
      return reply.status(result.duplicate ? 200 : 201).send({ recordingId: result.recordingId, sizeBytes });
    });

    /**
     * Signaling: the coordinator is the web app session whose cookie came with the upgrade (same origin only); the
     * patient's first message carries the join token. Then consent and
     * SDP/ICE relay. The peer may be on another web process: everything goes through the database (see above).
     */
    const publicOrigin = new URL(deps.publicBaseUrl).origin;
    async function sessionCoordinator(request: FastifyRequest): Promise<Coordinator | null> {
      // Cross-site WebSocket hijacking: a page elsewhere must not ride the cookie (SameSite=Strict is a second line).
      const origin = request.headers.origin;
      if (origin && origin !== publicOrigin && origin !== `${request.protocol}://${request.headers.host}`) return null;
      const sessionId = request.headers.cookie ? parseCookie(request.headers.cookie)[SESSION_COOKIE] : undefined;
      if (!sessionId) return null;
      return (await touchWebSession(db, sessionId, deps.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS))?.coordinator ?? null;
    }

    scope.get('/ws/visits/:id', { websocket: true, ...policy({ auth: 'link', link: 'visit' }) }, (socket: WebSocket, request) => {
      const visitId = (request.params as { id: string }).id;
      let connection: LocalConnection | undefined;
      let actorId: string | null = null;
      let closing = false;
      const fail = (message: string) => {
        closing = true;
        socket.send(JSON.stringify({ type: 'error', message }));
        socket.close(1008, message);
      };
      // Over the cap the new socket is refused; the open ones are left alone.
      if (openSockets >= limits.visitSocketsPerProcess) return fail('too many visit connections on this server; retry shortly');
      openSockets++;
      // Until its hello a socket proves nothing, so it may not sit on a slot: the page sends hello as soon as it opens.
      const helloDeadline = setTimeout(() => fail(`no hello within ${limits.visitHelloTimeoutMs} ms`), limits.visitHelloTimeoutMs);

      async function handle(raw: Buffer): Promise<void> {
        if (closing) return;
        let message: unknown;
        try {
          message = JSON.parse(raw.toString());
        } catch {
          return fail('messages must be JSON');
        }
        if (!connection) {
          const hello = Hello.safeParse(message);
          if (!hello.success) return fail('the first message must be hello');
          if (hello.data.role === 'coordinator') {
            const caller = await sessionCoordinator(request);
            const visit = caller ? await findVisit(db, visitId) : null;
            if (!caller || !visit || !(await canSeePatient(db, caller, visit.patientId))) return fail('not allowed');
            actorId = caller.id;
          } else if (!hello.data.token || !(await findVisitByToken(db, visitId, hello.data.token))) {
            return fail('the link is invalid or has expired');
          }
          if (closing) return;
          let openGate!: () => void;
          const gate = new Promise<void>((resolve) => (openGate = resolve));
          const joining: LocalConnection = { id: randomUUID(), visitId, side: hello.data.role, socket, deliveries: gate, joined: Promise.resolve() };
          // Held locally before the join commits: the join itself may address it (ready, or a replaced notice).
          connections.set(joining.id, joining);
          held.add(joining);
          joining.joined = joinVisitSignaling(db, { visitId, side: joining.side, connectionId: joining.id }).then(() => {});
          connection = joining;
          try {
            await joining.joined;
            // Welcome goes out first; whatever the join addressed to this connection follows it.
            socket.send(JSON.stringify({ type: 'welcome', recorded: true }));
          } finally {
            openGate();
          }
          return;
        }
        const parsed = ClientMessage.safeParse(message);
        if (!parsed.success) return fail('unknown message');
        const { id: connectionId, side } = connection;
        if (parsed.data.type === 'consent') {
          await recordVisitConsent(db, { visitId, side, connectionId, actorId, ip: request.ip });
        } else {
          await relayVisitSignal(db, { visitId, fromSide: side, fromConnection: connectionId, body: JSON.stringify(parsed.data) });
        }
      }

      // One message at a time, in arrival order: what this side sends commits, and so reaches the peer, in order.
      // Each is a database write, so a socket may not queue without bound (a page sends a few dozen at most).
      let incoming = Promise.resolve();
      let queued = 0;
      socket.on('message', (raw: Buffer) => {
        if (closing) return;
        clearTimeout(helloDeadline);
        if (++queued > MAX_QUEUED_SIGNALS) return fail('too many messages');
        incoming = incoming
          .then(() => handle(raw))
          .catch((error: unknown) => {
            request.log.error({ err: error, visitId }, 'visit signaling failed');
            if (!closing) fail('internal error');
          })
          .finally(() => queued--);
      });
      socket.on('close', () => {
        closing = true;
        openSockets--;
        clearTimeout(helloDeadline);
        if (connection) void leave(connection);
      });
    });
  });
}

interface LocalConnection {
  id: string;
  visitId: string;
  side: VisitSide;
  socket: WebSocket;
  /** Deliveries to this socket, one after another in NOTIFY (commit) order; starts after `welcome`. */
  deliveries: Promise<void>;
  joined: Promise<void>;
  left?: Promise<void>;
}

const chunkKey = (visitId: string, index: number) => `visits/${visitId}/chunks/${String(index).padStart(6, '0')}.webm`;
