import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import twilio from 'twilio';
import { z } from 'zod';
import { decideCallRoute } from '../calls/call-routing.ts';
import type { CallSettings } from '../calls/settings.ts';
import { parseForm } from '../channels/twilio-sms.ts';
import {
  applyCallStatus,
  findCall,
  findCallBySid,
  findCoordinatorReach,
  recordDialStatus,
  recordInboundCall,
  recordRecording,
  setCallRoute,
  type CallRow,
  type RecordingKind,
} from '../db/calls.ts';
import { BadRequestError, ForbiddenError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';
import { storableText } from '../core/text.ts';
import { policy } from './policy.ts';

const { VoiceResponse } = twilio.twiml;
type Params = Record<string, string | string[]>;

const single = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);
const CallQuery = z.object({ callId: z.uuid() });
const RecordingQuery = z.object({ callId: z.uuid().optional(), kind: z.enum(['conversation', 'voicemail']).optional() });
const optionalInt = (value: string | undefined): number | null => (value !== undefined && /^\d+$/.test(value) ? Number(value) : null);

/**
 * Twilio Voice: the incoming-call webhook, the <Dial>/<Record> action callbacks, the click-to-call bridge, call
 * status and recording status callbacks. Every route checks X-Twilio-Signature over PUBLIC_BASE_URL + path +
 * query and the exact form body before reading anything; a bad signature is a 403 and changes nothing.
 */
export async function registerVoiceWebhookRoutes(app: FastifyInstance, deps: AppDeps & { calls?: CallSettings }): Promise<void> {
  const settings = deps.calls;
  if (!settings) return;
  const { db } = deps;
  const url = (path: string, query: Record<string, string>) => `${deps.publicBaseUrl}${path}?${new URLSearchParams(query)}`;

  function verify(request: FastifyRequest): Params {
    if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/x-www-form-urlencoded body');
    const signature = single(request.headers['x-twilio-signature']);
    if (!signature) throw new ForbiddenError('signature_missing', 'X-Twilio-Signature header is missing');
    const params = parseForm(request.body);
    if (!twilio.validateRequest(settings!.twilio.authToken, signature, deps.publicBaseUrl + request.url, params)) {
      throw new ForbiddenError('signature_invalid', 'X-Twilio-Signature does not match');
    }
    if (single(params.AccountSid) !== settings!.twilio.accountSid) throw new ForbiddenError('account_mismatch', 'AccountSid is not ours');
    // Checked over the bytes as sent; stored without what PostgreSQL cannot hold (src/core/text.ts).
    const clean = (value: string) => storableText(value).text;
    return Object.fromEntries(Object.entries(params).map(([key, value]) => [key, Array.isArray(value) ? value.map(clean) : clean(value)]));
  }

  const twiml = (reply: FastifyReply, response: InstanceType<typeof VoiceResponse>) => reply.type('text/xml').send(response.toString());

  function recordingCallback(call: CallRow, kind: RecordingKind): string {
    return url('/webhooks/twilio/recording', { callId: call.id, kind });
  }

  /** The voicemail branch: a greeting, then <Record>; its action only hangs up (without one Twilio would re-request this document). */
  function voicemail(response: InstanceType<typeof VoiceResponse>, call: CallRow): void {
    response.say(settings!.voicemailGreeting);
    response.record({
      action: url('/webhooks/twilio/voice/recorded', { callId: call.id }),
      maxLength: settings!.voicemailMaxSec,
      playBeep: true,
      recordingStatusCallback: recordingCallback(call, 'voicemail'),
      recordingStatusCallbackEvent: ['completed', 'absent'],
    });
    response.hangup();
  }

  function dial(response: InstanceType<typeof VoiceResponse>, call: CallRow, to: string, leg: 'coordinator' | 'patient'): void {
    const verb = response.dial({
      record: 'record-from-answer-dual',
      recordingStatusCallback: recordingCallback(call, 'conversation'),
      recordingStatusCallbackEvent: ['completed', 'absent'],
      action: url('/webhooks/twilio/voice/dial-action', { callId: call.id, leg }),
      timeout: settings!.dialTimeoutSec,
      ...(leg === 'patient' && settings!.twilio.voiceNumber ? { callerId: settings!.twilio.voiceNumber } : {}),
    });
    verb.number(to);
  }

  /** An incoming call: log it on the caller's patient, then put it through to their coordinator or take a voicemail. */
  app.post('/webhooks/twilio/voice', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const params = verify(request);
    const callSid = single(params.CallSid);
    const from = single(params.From);
    const to = single(params.To);
    if (!callSid || !from || !to) throw new BadRequestError('invalid_webhook', 'CallSid, From and To are required');
    const { call, duplicate } = await recordInboundCall(db, { callSid, from, to });
    const decision = decideCallRoute(await findCoordinatorReach(db, call.patientId), new Date());
    await setCallRoute(db, call.id, {
      route: decision.route,
      reason: decision.reason,
      coordinatorId: decision.coordinatorId,
      coordinatorPhone: decision.route === 'dial' ? decision.phone : null,
    });
    request.log.info({ callId: call.id, patientId: call.patientId, route: decision.route, duplicate }, 'incoming call');
    const response = new VoiceResponse();
    response.say(settings.recordingNotice);
    if (decision.route === 'dial') dial(response, call, decision.phone, 'coordinator');
    else voicemail(response, call);
    return twiml(reply, response);
  });

  /** <Dial> finished: answered → hang up; unanswered inbound → voicemail; unanswered patient on click-to-call → tell the coordinator. */
  app.post('/webhooks/twilio/voice/dial-action', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const params = verify(request);
    const { callId } = parseInput(CallQuery, request.query);
    const leg = (request.query as { leg?: string }).leg === 'patient' ? 'patient' : 'coordinator';
    const call = await findCall(db, callId);
    if (!call) throw new BadRequestError('unknown_call', 'no such call');
    const dialStatus = single(params.DialCallStatus) ?? 'unknown';
    const response = new VoiceResponse();
    if (dialStatus === 'completed' || dialStatus === 'answered') {
      await recordDialStatus(db, call.id, dialStatus);
      response.hangup();
    } else if (leg === 'coordinator' && call.direction === 'inbound') {
      await recordDialStatus(db, call.id, dialStatus, 'voicemail', `the coordinator did not answer (${dialStatus})`);
      voicemail(response, call);
    } else {
      await recordDialStatus(db, call.id, dialStatus, undefined, `the patient did not answer (${dialStatus})`);
      response.say('The patient did not answer. Goodbye.');
      response.hangup();
    }
    request.log.info({ callId, dialStatus, leg }, 'dial finished');
    return twiml(reply, response);
  });

  app.post('/webhooks/twilio/voice/recorded', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    verify(request);
    const response = new VoiceResponse();
    response.hangup();
    return twiml(reply, response);
  });

  /** Click-to-call, second half: the coordinator picked up the call we placed; now ring the patient, recorded. */
  app.post('/webhooks/twilio/voice/bridge', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const params = verify(request);
    const { callId } = parseInput(CallQuery, request.query);
    const call = await findCall(db, callId);
    if (!call || call.direction !== 'outbound') throw new BadRequestError('unknown_call', 'no such outbound call');
    const callSid = single(params.CallSid);
    if (call.providerCallSid && callSid && call.providerCallSid !== callSid) throw new BadRequestError('call_mismatch', 'CallSid does not match the call');
    await setCallRoute(db, call.id, { route: 'dial', reason: 'click-to-call: coordinator answered, ringing the patient', coordinatorId: null, coordinatorPhone: null });
    const response = new VoiceResponse();
    response.say(settings.recordingNotice);
    dial(response, call, call.patientAddress, 'patient');
    return twiml(reply, response);
  });

  /** Call status callback (configure it on the number for incoming calls; we request it on calls we place). */
  app.post('/webhooks/twilio/call-status', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const params = verify(request);
    const callSid = single(params.CallSid);
    const status = single(params.CallStatus);
    if (!callSid || !status) throw new BadRequestError('invalid_webhook', 'CallSid and CallStatus are required');
    const query = request.query as { callId?: string };
    const call = query.callId ? await findCall(db, query.callId) : await findCallBySid(db, 'twilio', callSid);
    if (call) await applyCallStatus(db, { callId: call.id, status, durationSec: optionalInt(single(params.CallDuration)) ?? undefined });
    else request.log.info({ callSid }, 'status for a call we do not know; ignored');
    return twiml(reply, new VoiceResponse());
  });

  /**
   * Recording status callback: stored once per RecordingSid together with a durable download job, then 200.
   * Downloading here would hold Twilio's request open for as long as the media takes; the worker does it.
   */
  app.post('/webhooks/twilio/recording', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const params = verify(request);
    const query = parseInput(RecordingQuery, request.query);
    const recordingSid = single(params.RecordingSid);
    const callSid = single(params.CallSid);
    if (!recordingSid || !/^RE[0-9a-fA-F]{32}$/.test(recordingSid)) throw new BadRequestError('invalid_webhook', 'RecordingSid is missing or malformed');
    const call = query.callId ? await findCall(db, query.callId) : callSid ? await findCallBySid(db, 'twilio', callSid) : null;
    if (!call) {
      request.log.warn({ recordingSid }, 'recording for a call we do not know; ignored');
      return reply.status(200).send();
    }
    const providerStatus = single(params.RecordingStatus) ?? 'completed';
    if (providerStatus === 'in-progress') return reply.status(200).send();
    const source = single(params.RecordingSource);
    const kind: RecordingKind = query.kind ?? (source === 'RecordVerb' ? 'voicemail' : 'conversation');
    const result = await recordRecording(db, {
      call,
      recordingSid,
      providerStatus,
      sourceUrl: single(params.RecordingUrl) ?? null,
      kind,
      durationSec: optionalInt(single(params.RecordingDuration)),
      channels: optionalInt(single(params.RecordingChannels)),
      errorCode: single(params.ErrorCode) ?? null,
      downloadMaxAttempts: settings.downloadMaxAttempts,
    });
    request.log.info({ callId: call.id, recordingId: result.recordingId, duplicate: result.duplicate }, 'recording callback');
    return reply.status(200).send();
  });
}
