import fastifyWebsocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from '@fastify/websocket';
import { z } from 'zod';
import type { CallSettings } from '../calls/settings.ts';
import { renderVisitPage } from '../calls/visit-page.ts';
import { appendAudit } from '../db/audit.ts';
import { findCoordinatorByToken, type Coordinator } from '../db/coordinators.ts';
import { createOutbound } from '../db/messages.ts';
import { canAccessPatient } from '../db/patients.ts';
import { completeVisitRecording, createVisit, findVisit, findVisitByToken, listChunks, recordChunk, recordConsent, setInviteMessage, type VisitRow } from '../db/visits.ts';
import { AppError, BadRequestError, ConflictError, NotFoundError, UnauthorizedError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';

const IdParams = z.object({ id: z.string().max(64) });
const ChunkParams = z.object({ id: z.string().max(64), index: z.coerce.number().int().min(0).max(100_000) });
// chunkCount omitted: assemble what the server kept (the contiguous run from chunk 0), e.g. after the tab closed mid-visit.
const CompleteBody = z.object({ chunkCount: z.number().int().min(1).max(100_001).optional() });
const Hello = z.object({ type: z.literal('hello'), role: z.enum(['coordinator', 'patient']), token: z.string().min(1).max(200) });
const ClientMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('consent') }),
  z.object({ type: z.literal('signal'), data: z.unknown() }),
  z.object({ type: z.literal('bye') }),
]);
const WEBM_TYPES = new Set(['video/webm', 'audio/webm']);
const EBML_MAGIC = Buffer.from([0x1a, 0x45, 0xdf, 0xa3]);

/**
 * Video visits: a coordinator starts one from the thread; the patient gets an expiring join link on their
 * last-used medium, like any reply; the two browsers talk WebRTC, with this server relaying signaling over a
 * WebSocket (rooms live in this process: run one web process for visits, or add a shared bus). Recording needs
 * both sides' consent, logged on the visit and in the audit log; chunks upload resumably and are assembled,
 * then transcribed by the worker like a call recording.
 */
export async function registerVisitRoutes(app: FastifyInstance, deps: AppDeps & { calls?: CallSettings }): Promise<void> {
  const settings = deps.calls;
  if (!settings) return;
  const { db } = deps;
  const visitSettings = settings.visits;
  const rooms = new Map<string, { coordinator?: WebSocket; patient?: WebSocket }>();

  const callerOf = (request: FastifyRequest): Coordinator => {
    if (!request.caller) throw new UnauthorizedError();
    return request.caller;
  };

  async function requireVisit(request: FastifyRequest, id: string): Promise<{ caller: Coordinator; visit: VisitRow }> {
    const caller = callerOf(request);
    const visit = await findVisit(db, id);
    if (!visit || !(await canAccessPatient(db, caller, visit.patientId))) throw new NotFoundError('visit');
    return { caller, visit };
  }

  app.post('/api/patients/:id/visits', async (request, reply) => {
    const caller = callerOf(request);
    const { id: patientId } = parseInput(IdParams, request.params);
    if (!(await canAccessPatient(db, caller, patientId))) throw new NotFoundError('patient');
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

  app.get('/visits/:id/host', async (_request, reply) => reply.type('text/html').header('cache-control', 'no-store').send(renderVisitPage('coordinator', { iceServers: visitSettings.iceServers })));
  app.get('/visit/:id', async (_request, reply) => reply.type('text/html').header('cache-control', 'no-store').send(renderVisitPage('patient', { iceServers: visitSettings.iceServers })));

  app.get('/api/visits/:id/recording/chunks', async (request) => {
    const { id } = parseInput(IdParams, request.params);
    const { visit } = await requireVisit(request, id);
    return { visitId: visit.id, chunks: await listChunks(db, visit.id) };
  });

  await app.register(async (scope) => {
    // Encapsulated: raw chunk bodies and the WebSocket plugin apply to these routes only.
    scope.addContentTypeParser([...WEBM_TYPES], { parseAs: 'buffer', bodyLimit: visitSettings.maxChunkBytes }, (_request, body, done) => done(null, body));
    await scope.register(fastifyWebsocket, { options: { maxPayload: 256 * 1024 } });

    scope.put('/api/visits/:id/recording/chunks/:index', { bodyLimit: visitSettings.maxChunkBytes }, async (request, reply) => {
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

    scope.post('/api/visits/:id/recording/complete', async (request, reply) => {
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

    /** Signaling: the first message authenticates (coordinator bearer token or patient join token); then consent and SDP/ICE relay. */
    scope.get('/ws/visits/:id', { websocket: true }, (socket: WebSocket, request) => {
      const visitId = (request.params as { id: string }).id;
      let side: 'coordinator' | 'patient' | undefined;
      let actorId: string | null = null;
      const fail = (message: string) => {
        socket.send(JSON.stringify({ type: 'error', message }));
        socket.close(1008, message);
      };
      const peerOf = () => (side === 'coordinator' ? rooms.get(visitId)?.patient : rooms.get(visitId)?.coordinator);

      async function maybeReady(): Promise<void> {
        const room = rooms.get(visitId);
        const visit = await findVisit(db, visitId);
        if (room?.coordinator && room.patient && visit?.coordinatorConsentAt && visit.patientConsentAt) {
          for (const peer of [room.coordinator, room.patient]) peer.send(JSON.stringify({ type: 'ready' }));
        }
      }

      socket.on('message', (raw: Buffer) => {
        void (async () => {
          let message: unknown;
          try {
            message = JSON.parse(raw.toString());
          } catch {
            return fail('messages must be JSON');
          }
          if (!side) {
            const hello = Hello.safeParse(message);
            if (!hello.success) return fail('the first message must be hello');
            if (hello.data.role === 'coordinator') {
              const caller = await findCoordinatorByToken(db, hello.data.token);
              const visit = caller ? await findVisit(db, visitId) : null;
              if (!caller || !visit || !(await canAccessPatient(db, caller, visit.patientId))) return fail('not allowed');
              actorId = caller.id;
            } else if (!(await findVisitByToken(db, visitId, hello.data.token))) {
              return fail('the link is invalid or has expired');
            }
            side = hello.data.role;
            const room = rooms.get(visitId) ?? {};
            room[side]?.close(1000, 'replaced by a new connection');
            room[side] = socket;
            rooms.set(visitId, room);
            socket.send(JSON.stringify({ type: 'welcome', recorded: true }));
            return;
          }
          const parsed = ClientMessage.safeParse(message);
          if (!parsed.success) return fail('unknown message');
          if (parsed.data.type === 'consent') {
            const visit = await recordConsent(db, visitId, side);
            if (visit) await appendAudit(db, { actorId, action: 'visit.consent', patientId: visit.patientId, detail: { visitId, side }, ip: request.ip });
            peerOf()?.send(JSON.stringify({ type: 'consent', side }));
            await maybeReady();
          } else {
            peerOf()?.send(JSON.stringify(parsed.data));
          }
        })().catch((error: unknown) => {
          request.log.error({ err: error, visitId }, 'visit signaling failed');
          fail('internal error');
        });
      });
      socket.on('close', () => {
        const room = rooms.get(visitId);
        if (room && side && room[side] === socket) delete room[side];
        if (room && !room.coordinator && !room.patient) rooms.delete(visitId);
      });
    });
  });
}

const chunkKey = (visitId: string, index: number) => `visits/${visitId}/chunks/${String(index).padStart(6, '0')}.webm`;
