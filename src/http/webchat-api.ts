import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { WEBCHAT_PROVIDER } from '../channels/webchat.ts';
import { appendAudit } from '../db/audit.ts';
import { applyDeliveryStatus, createOutbound } from '../db/messages.ts';
import { recordInbound } from '../db/patients.ts';
import { storableText } from '../core/text.ts';
import { ensureWebchatIdentity, filterOwnOutbound, pushToWebchatStream, readWebchatStream, WEBCHAT_CHANNEL } from '../db/webchat.ts';
import { ConflictError, ForbiddenError, UnauthorizedError } from '../errors.ts';
import { checkWebchatLink, isWebchatLinkLive, issueWebchatLink, listWebchatLinks, renewWebchatLink, revokeWebchatLinks } from '../db/webchat-links.ts';
import { isWellFormedWebchatToken, webchatAddress } from '../security/webchat-link.ts';
import { acquireStreamSlot, CONNECTION_LIMIT_DEFAULTS, ConnectionCounter } from './connection-limits.ts';
import { parseInput, type AppDeps } from './server.ts';
import { PATIENT, PUBLIC, patientRoute, policy } from './policy.ts';

export interface WebchatSettings {
  /** Key of the stored links' token hashes (WEBCHAT_LINK_SECRET). */
  linkSecret: string;
  /** Default lifetime of a new link. */
  linkTtlMs: number;
  /** Idle SSE connections get a comment line this often, and re-read the stream (a safety net for a lost NOTIFY). */
  heartbeatMs?: number;
}

const PAGE_DIR = new URL('../web/webchat/', import.meta.url);
const PAGE_FILES = { 'index.html': 'text/html; charset=utf-8', 'chat.js': 'text/javascript; charset=utf-8', 'chat.css': 'text/css; charset=utf-8' } as const;
// Same origin only, no inline script or style, no framing: the page renders patient text with textContent.
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const MAX_BODY_CHARS = 4000;
const STREAM_PAGE = 200;

const LinkBody = z.object({
  send: z.boolean().default(false),
  ttlHours: z.number().min(0.01).max(24 * 7).optional(),
  idempotencyKey: z.string().min(1).max(200).optional(),
}).strict();
const PatientMessageBody = z.object({
  clientMessageId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'clientMessageId must be 8–64 characters of A–Z, a–z, 0–9, _ or -'),
  // Blank is judged without NUL and lone surrogates, which recordInbound removes (src/core/text.ts).
  body: z.string().trim().max(MAX_BODY_CHARS).refine((body) => storableText(body).text.trim() !== '', 'body must not be empty'),
}).strict();
const ReceiptBody = z.object({ messageIds: z.array(z.uuid()).min(1).max(200), status: z.enum(['delivered', 'read']) }).strict();
const StreamQuery = z.object({ after: z.coerce.number().int().min(0).max(2 ** 31 - 1).optional() });

type Wake = () => void;

export async function registerWebchatRoutes(app: FastifyInstance, deps: AppDeps & { webchat?: WebchatSettings }): Promise<void> {
  const settings = deps.webchat;
  if (!settings) return;
  const { db } = deps;
  const heartbeatMs = settings.heartbeatMs ?? 15_000;
  const pages = Object.fromEntries(
    await Promise.all(Object.keys(PAGE_FILES).map(async (name) => [name, await readFile(new URL(name, PAGE_DIR))] as const)),
  ) as Record<keyof typeof PAGE_FILES, Buffer>;

  // One LISTEN per process; a NOTIFY names a patient and wakes only that patient's open streams. The stream
  // itself is read from the database, so a wake-up carries no data and one lost wake-up loses nothing.
  const subscribers = new Map<string, Set<Wake>>();
  const unlisten = await db.listen(
    WEBCHAT_CHANNEL,
    (patientId) => {
      for (const wake of subscribers.get(patientId) ?? []) wake();
    },
    // Wake-ups were missed while the LISTEN connection was down: every stream re-reads.
    { onReconnect: () => subscribers.forEach((set) => set.forEach((wake) => wake())) },
  );
  const openStreams = new Set<() => void>();
  const limits = { ...CONNECTION_LIMIT_DEFAULTS, ...deps.connectionLimits };
  // Per patient, not per link: every link made for one patient opens the same chat.
  const streamSlots = new ConnectionCounter({ perKey: limits.webchatStreamsPerPatient, total: limits.webchatStreamsPerProcess });
  app.addHook('preClose', async () => {
    for (const end of [...openStreams]) end();
  });
  app.addHook('onClose', async () => {
    await unlisten().catch(() => {});
  });

  async function patientOf(request: FastifyRequest): Promise<string> {
    return (await claimsOf(request)).patientId;
  }

  /** The stored link behind the request's bearer token: unknown, expired and revoked links are 403. */
  async function claimsOf(request: FastifyRequest): Promise<{ linkId: string; patientId: string; expiresAt: Date }> {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) throw new UnauthorizedError('this chat needs the link it was opened with');
    const check = isWellFormedWebchatToken(token) ? await checkWebchatLink(db, settings!.linkSecret, token) : ({ ok: false, reason: 'unknown' } as const);
    if (!check.ok) {
      const message = check.reason === 'unknown' ? 'this chat link is not valid' : `this chat link has ${check.reason === 'expired' ? 'expired' : 'been withdrawn'}; ask your care team for a new one`;
      throw new ForbiddenError(`link_${check.reason}`, message);
    }
    return check;
  }

  const sendPage = (name: keyof typeof PAGE_FILES) => async (_request: FastifyRequest, reply: FastifyReply) =>
    reply
      .header('content-security-policy', PAGE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .type(PAGE_FILES[name])
      .send(pages[name]);
  app.get('/chat', policy(PUBLIC), sendPage('index.html'));
  app.get('/chat/chat.js', policy(PUBLIC), sendPage('chat.js'));
  app.get('/chat/chat.css', policy(PUBLIC), sendPage('chat.css'));

  /** A coordinator makes a link for one of their patients and, optionally, sends it as a normal reply. */
  app.post('/api/patients/:id/webchat-link', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    const input = parseInput(LinkBody, request.body ?? {});
    const link = await issueWebchatLink(db, settings.linkSecret, { patientId, createdBy: caller.id, ttlMs: input.ttlHours !== undefined ? input.ttlHours * 3_600_000 : settings.linkTtlMs });
    const { expiresAt, linkId } = link;
    const url = `${deps.publicBaseUrl}/chat#${link.token}`;
    let message: unknown;
    if (input.send) {
      const created = await createOutbound(db, {
        patientId,
        authorId: caller.id,
        body: `Your care team invites you to a secure chat: ${url}`,
        idempotencyKey: input.idempotencyKey,
      });
      if ('error' in created) throw new ConflictError(created.error, created.reason);
      message = created;
    }
    await appendAudit(db, { actorId: caller.id, action: 'webchat.link_created', patientId, detail: { linkId, expiresAt: expiresAt.toISOString(), sent: input.send }, ip: request.ip });
    return reply.status(201).send({ url, linkId, expiresAt, ...(message ? { message } : {}) });
  });

  /**
   * A patient's links, and revoking one or all of them (any coordinator who may see the patient). Links are also
   * revoked by the database when the patient changes hands or is merged (migration 0013's triggers).
   */
  app.get('/api/patients/:id/webchat-links', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const callerId = caller.id;
    await appendAudit(db, { actorId: callerId, action: 'webchat.links_read', patientId, ip: request.ip });
    return { links: await listWebchatLinks(db, patientId) };
  });

  app.delete('/api/patients/:id/webchat-links', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const callerId = caller.id;
    const revoked = await revokeWebchatLinks(db, { patientId, linkId: null, reason: 'revoked' });
    await appendAudit(db, { actorId: callerId, action: 'webchat.link_revoked', patientId, detail: { all: true, revoked }, ip: request.ip });
    return { revoked };
  });

  app.delete('/api/patients/:id/webchat-links/:linkId', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const callerId = caller.id;
    const { linkId } = parseInput(z.object({ linkId: z.uuid() }), { linkId: (request.params as { linkId?: unknown }).linkId });
    const revoked = await revokeWebchatLinks(db, { patientId, linkId, reason: 'revoked' });
    await appendAudit(db, { actorId: callerId, action: 'webchat.link_revoked', patientId, detail: { linkId, revoked }, ip: request.ip });
    return { revoked };
  });

  /** The page exchanges its still-valid link for a fresh one (the old one stops working): an open chat never lapses. */
  app.post('/chat/api/renew', policy({ auth: 'link', link: 'webchat' }), async (request) => {
    const { linkId, patientId } = await claimsOf(request);
    const fresh = await renewWebchatLink(db, settings.linkSecret, { linkId, ttlMs: settings.linkTtlMs });
    if (!fresh) throw new ForbiddenError('link_revoked', 'this chat link has been withdrawn; ask your care team for a new one');
    await appendAudit(db, { actorId: null, action: 'webchat.link_renewed', patientId, detail: { from: linkId, to: fresh.linkId }, ip: request.ip });
    return { token: fresh.token, expiresAt: fresh.expiresAt };
  });

  /** A patient's message from the page: an inbound message on channel webchat, deduplicated by the page's own id. */
  app.post('/chat/api/messages', { bodyLimit: 16 * 1024, ...policy({ auth: 'link', link: 'webchat' }) }, async (request, reply) => {
    const patientId = await patientOf(request);
    const input = parseInput(PatientMessageBody, request.body);
    const address = webchatAddress(patientId);
    if (!(await ensureWebchatIdentity(db, patientId, address))) throw new ForbiddenError('link_unknown_patient', 'this chat link is not valid');
    const result = await recordInbound(db, {
      kind: 'inbound',
      channel: 'webchat',
      provider: WEBCHAT_PROVIDER,
      providerMessageId: `${patientId}:${input.clientMessageId}`,
      from: address,
      to: 'webchat',
      body: input.body,
      media: [],
    });
    // Idempotent: a retry after a crash between the two commits pushes it now.
    const { streamSeq } = await pushToWebchatStream(db, result.patientId, result.messageId);
    request.log.info({ patientId: result.patientId, messageId: result.messageId, duplicate: result.duplicate }, 'inbound webchat');
    return reply.status(result.duplicate ? 200 : 201).send({ messageId: result.messageId, streamSeq, duplicate: result.duplicate });
  });

  /** The page's receipts for our replies: `delivered` when it rendered them, `read` when it was visible. */
  app.post('/chat/api/receipts', { bodyLimit: 16 * 1024, ...policy({ auth: 'link', link: 'webchat' }) }, async (request, reply) => {
    const patientId = await patientOf(request);
    const input = parseInput(ReceiptBody, request.body);
    const own = await filterOwnOutbound(db, patientId, input.messageIds);
    for (const messageId of own) {
      await applyDeliveryStatus(db, { kind: 'status', channel: 'webchat', provider: WEBCHAT_PROVIDER, providerMessageId: messageId, status: input.status });
    }
    return reply.send({ applied: own.length });
  });

  /**
   * Server-sent events: replays the stream after `?after=` or `Last-Event-ID` from the database, then follows it
   * live. Each event's id is its stream position, so a reconnecting client resumes exactly where it stopped.
   */
  app.get('/chat/api/stream', policy({ auth: 'link', link: 'webchat' }), async (request, reply) => {
    const { linkId, patientId, expiresAt } = await claimsOf(request);
    const query = parseInput(StreamQuery, request.query);
    const lastEventId = request.headers['last-event-id'];
    const fromHeader = typeof lastEventId === 'string' && /^\d{1,10}$/.test(lastEventId) ? Number(lastEventId) : undefined;
    let lastSent = query.after ?? fromHeader ?? 0;
    // Over a cap the new stream is refused (429, the page retries with backoff); the open ones are left alone.
    acquireStreamSlot(streamSlots, patientId, reply.raw, {
      perKey: `at most ${limits.webchatStreamsPerPatient} chat windows may be open at once; close another one and retry`,
      perProcess: 'the chat server is busy; retry shortly',
    });
    // The patient reading their own chat is still an access to PHI: recorded like any other read.
    await appendAudit(db, { actorId: null, action: 'webchat.stream_opened', patientId, detail: { after: lastSent }, ip: request.ip });

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // The socket closes with the stream, so a server shutting down is not kept waiting for the client's keep-alive.
      connection: 'close',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
      // The page renews its link before this (POST /chat/api/renew).
      'x-link-expires-at': expiresAt.toISOString(),
    });
    // `retry` tells an EventSource to reconnect after 1 s (it then sends Last-Event-ID).
    raw.write('retry: 1000\n: connected\n\n');

    let closed = false;
    let pumping = false;
    let again = false;
    const pump = async (): Promise<void> => {
      if (pumping) {
        again = true;
        return;
      }
      pumping = true;
      try {
        do {
          again = false;
          // Revoked (by a coordinator, a handoff or a merge, which also wake this stream) or expired: stop here.
          if (!(await isWebchatLinkLive(db, linkId))) return end();
          for (;;) {
            const items = await readWebchatStream(db, { patientId, afterSeq: lastSent, limit: STREAM_PAGE });
            for (const item of items) {
              if (closed) return;
              const data = { seq: item.streamSeq, id: item.messageId, direction: item.direction, body: item.body, at: item.at, clientMessageId: item.clientMessageId };
              raw.write(`id: ${item.streamSeq}\nevent: message\ndata: ${JSON.stringify(data)}\n\n`);
              lastSent = item.streamSeq;
            }
            if (items.length < STREAM_PAGE) break;
          }
        } while (again && !closed);
      } catch (error) {
        request.log.warn({ err: error, patientId }, 'webchat stream read failed; the client will reconnect');
        end();
      } finally {
        pumping = false;
      }
    };
    const wake = () => void pump();
    const heartbeat = setInterval(() => {
      // A link that expires while its page is open stops streaming; the page's reconnect then gets the 403.
      if (Date.now() >= expiresAt.getTime()) return end();
      if (!closed) raw.write(': ping\n\n');
      wake();
    }, heartbeatMs);
    function end() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      subscribers.get(patientId)?.delete(wake);
      if (subscribers.get(patientId)?.size === 0) subscribers.delete(patientId);
      openStreams.delete(end);
      raw.end();
    }
    openStreams.add(end);
    raw.on('close', end);
    // Subscribe before the first read: a push committed between the two is then either read or woken for.
    let set = subscribers.get(patientId);
    if (!set) subscribers.set(patientId, (set = new Set()));
    set.add(wake);
    await pump();
  });
}
