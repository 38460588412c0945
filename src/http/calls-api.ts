import type { FastifyInstance } from 'fastify';
import rangeParser from 'range-parser';
import { z } from 'zod';
import type { CallSettings } from '../calls/settings.ts';
import { classifyTwilioError } from '../channels/twilio-sms.ts';
import { createTwilioClient } from '../channels/twilio-client.ts';
import { appendAudit } from '../db/audit.ts';
import { createOutboundCall, failOutboundCall, findRecordingMedia, PHONE_IDENTITY_CHANNEL, searchPatientContent, setProviderCallSid } from '../db/calls.ts';
import { AppError, ConflictError, NotFoundError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';
import { CALLER, PATIENT, callerOf, patientRoute, policy, requirePatientVisible } from './policy.ts';

const IdParams = z.object({ id: z.string().max(64) });
const SearchQuery = z.object({ q: z.string().trim().min(2, 'q needs at least 2 characters').max(200), limit: z.coerce.number().int().min(1).max(200).default(50) });

/**
 * Coordinator API for calls: click-to-call, recording media (authorised like the timeline, audited, HTTP range
 * requests for seeking in a player) and search over message bodies and call transcripts.
 * Who may call each route is its policy (src/http/policy.ts).
 */
export async function registerCallsApiRoutes(app: FastifyInstance, deps: AppDeps & { calls?: CallSettings }): Promise<void> {
  const { db } = deps;
  const settings = deps.calls;

  app.get('/api/search', policy(CALLER), async (request) => {
    const caller = callerOf(request);
    const { q, limit } = parseInput(SearchQuery, request.query);
    const hits = await searchPatientContent(db, { q, viewer: caller, limit });
    await appendAudit(db, { actorId: caller.id, action: 'search', detail: { q, hits: hits.length, patients: [...new Set(hits.map((hit) => hit.patientId))] }, ip: request.ip });
    return { q, hits };
  });

  if (!settings) return;
  const twilioClient = createTwilioClient({ accountSid: settings.twilio.accountSid, authToken: settings.twilio.authToken, apiBase: settings.twilio.apiBase, timeoutMs: settings.twilio.timeoutMs });

  /**
   * Click-to-call: Twilio rings the coordinator's phone first; when they answer, /webhooks/twilio/voice/bridge
   * dials the patient, recorded like an incoming call. The call is in the timeline before Twilio is asked.
   */
  app.post('/api/patients/:id/calls', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    if (!settings.twilio.voiceNumber) throw new ConflictError('voice_not_configured', 'no Twilio voice number is configured (TWILIO_VOICE_NUMBER or TWILIO_FROM_NUMBER)');
    const phone = (await db.query<{ phone: string | null }>(`SELECT phone FROM coordinators WHERE id = $1`, [caller.id])).rows[0]?.phone;
    if (!phone) throw new ConflictError('no_coordinator_phone', 'you have no phone number on file to be called on');
    const patientPhone = (
      await db.query<{ address: string }>(
        `SELECT address FROM channel_identities WHERE patient_id = $1 AND channel = $2 ORDER BY last_inbound_at DESC NULLS LAST, created_at DESC LIMIT 1`,
        [patientId, PHONE_IDENTITY_CHANNEL],
      )
    ).rows[0]?.address;
    if (!patientPhone) throw new ConflictError('no_phone_number', 'the patient has no phone number');

    const call = await createOutboundCall(db, { patientId, coordinatorId: caller.id, coordinatorPhone: phone, patientAddress: patientPhone, ourAddress: settings.twilio.voiceNumber });
    const query = new URLSearchParams({ callId: call.id });
    try {
      const created = await twilioClient.calls.create({
        to: phone,
        from: settings.twilio.voiceNumber,
        url: `${deps.publicBaseUrl}/webhooks/twilio/voice/bridge?${query}`,
        statusCallback: `${deps.publicBaseUrl}/webhooks/twilio/call-status?${query}`,
        statusCallbackEvent: ['answered', 'completed'],
      });
      await setProviderCallSid(db, call.id, created.sid);
      await appendAudit(db, { actorId: caller.id, action: 'call.start', patientId, detail: { callId: call.id, callSid: created.sid }, ip: request.ip });
      return reply.status(201).send({ callId: call.id, callSid: created.sid, seq: call.seq, status: 'queued' });
    } catch (error) {
      const failure = classifyTwilioError(error);
      await failOutboundCall(db, call.id, `Twilio refused the call: ${failure.message}`);
      await appendAudit(db, { actorId: caller.id, action: 'call.start_failed', patientId, detail: { callId: call.id, code: failure.details.code }, ip: request.ip });
      throw new AppError(502, 'provider_error', `Twilio could not place the call: ${failure.message}`, { cause: error });
    }
  });

  /** Recording media: 404 for a patient the caller may not see, exactly like the timeline; every read is audited. */
  app.get('/api/recordings/:id/media', policy({ auth: 'caller', scope: { handler: 'the recording\'s patient' } }), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    const media = await findRecordingMedia(db, id);
    if (!media) throw new NotFoundError('recording');
    await requirePatientVisible(db, caller, media.patientId, 'recording');
    if (!media.storageKey) throw new NotFoundError('recording media (not downloaded yet, or failed)');
    const size = await settings.storage.size(media.storageKey);
    if (size === undefined) throw new NotFoundError('recording media');

    const header = request.headers.range;
    const ranges = header ? rangeParser(size, header, { combine: true }) : undefined;
    reply.header('accept-ranges', 'bytes').header('cache-control', 'private, no-store').type(media.contentType ?? 'application/octet-stream');
    if (ranges === -1) {
      await appendAudit(db, { actorId: caller.id, action: 'recording.media.read', patientId: media.patientId, detail: { recordingId: id, range: header, outcome: 'unsatisfiable' }, ip: request.ip });
      return reply.status(416).header('content-range', `bytes */${size}`).send();
    }
    // A malformed header (-2) is ignored, as RFC 9110 allows; several ranges are served as the whole object.
    const range = Array.isArray(ranges) && ranges.type === 'bytes' && ranges.length === 1 ? ranges[0]! : undefined;
    await appendAudit(db, {
      actorId: caller.id,
      action: 'recording.media.read',
      patientId: media.patientId,
      detail: { recordingId: id, ...(range ? { range: `${range.start}-${range.end}` } : {}) },
      ip: request.ip,
    });
    if (range) {
      return reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', String(range.end - range.start + 1))
        .send(settings.storage.read(media.storageKey, range));
    }
    return reply.status(200).header('content-length', String(size)).send(settings.storage.read(media.storageKey));
  });
}
