import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';

/**
 * Twilio Voice for the loopback fake (src/test/fake-twilio.ts): Calls.create, recording media behind Basic auth
 * with injectable download faults, and a small TwiML interpreter that "plays" a call against our webhooks the way
 * Twilio would: voice webhook → our TwiML → <Dial>/<Record> → signed action and recording status callbacks →
 * call status callback. Only the verbs we emit are understood (Say, Pause, Dial>Number, Record, Hangup); anything
 * else fails the play loudly. Wire details: ../shared/reference/providers.md §5.
 */

export type MediaFault = { kind: 'status'; status: 401 | 404 | 500 | 502 | 503 } | { kind: 'drop' };
export type LegOutcome = 'answer' | 'no-answer' | 'busy' | 'failed';

export interface CreatedCall {
  sid: string;
  to: string;
  from: string;
  url: string;
  statusCallback?: string;
  form: Record<string, string | string[]>;
}

export interface MediaRequest {
  recordingSid: string;
  path: string;
  authorized: boolean;
  range?: string;
  outcome: 'served' | 'unauthorized' | 'not-found' | 'fault';
}

export interface PlayStep {
  url: string;
  status: number;
  body: string;
}

export interface PlayedCall {
  callSid: string;
  /** Every request the fake made to us, in order, with our answer. */
  steps: PlayStep[];
  recordingSids: string[];
  /** The verbs executed, e.g. ['Say', 'Dial:answer', 'Hangup']. */
  verbs: string[];
}

export interface PlayOptions {
  /** What the <Dial>ed party does; default 'answer'. */
  dial?: LegOutcome;
  /** Audio served for recordings made during this call; default the fake's current recording audio. */
  recordingPath?: string;
  recordingContentType?: string;
  /** RecordingDuration reported; default 5. */
  recordingDurationSec?: number;
  /** Sends a call status callback (completed) here at the end of an incoming call. */
  statusCallbackUrl?: string;
}

export interface FakeTwilioVoice {
  /** Calls.create requests the fake accepted. */
  readonly calls: CreatedCall[];
  /** Every GET of recording media, whether served or not. */
  readonly mediaRequests: MediaRequest[];
  /** Audio served for recordings (a 16 kHz WAV: this PocketSphinx model does not recognise 8 kHz telephone audio). */
  setRecordingAudio(path: string, contentType?: string): void;
  /** Faults for the next recording downloads, FIFO. */
  enqueueMediaFault(fault: MediaFault): void;
  /** Twilio receives a call from `from` to `to` and plays it against our voice webhook. */
  playInboundCall(args: { voiceUrl: string; from: string; to: string; callSid?: string } & PlayOptions): Promise<PlayedCall>;
  /** Plays a call we created with Calls.create: the first leg (the coordinator) answers, then our TwiML runs. */
  playOutboundCall(callSid: string, options?: PlayOptions & { firstLeg?: LegOutcome }): Promise<PlayedCall>;
  /** A bare signed recording status callback, for duplicate and bad-input tests. */
  sendRecordingStatus(args: { url: string; callSid: string; recordingSid?: string; status?: string; durationSec?: number; recordingPath?: string }): Promise<{ status: number; recordingSid: string }>;
  /** A bare signed voice webhook (returns our TwiML). */
  sendVoiceWebhook(args: { url: string; form: Record<string, string> }): Promise<{ status: number; body: string }>;
}

interface Recording {
  sid: string;
  callSid: string;
  path: string;
  contentType: string;
}

export interface VoiceInternals {
  accountSid: string;
  apiVersion: string;
  baseUrl(): string;
  postForm(url: string, signatureUrl: string | undefined, form: Record<string, string>): Promise<{ status: number; body: string }>;
  sendJson(res: ServerResponse, status: number, json: unknown): void;
  sendError(res: ServerResponse, error: { status: number; code: number; message: string }): void;
  isAuthorized(req: IncomingMessage): boolean;
  parseForm(raw: string): Record<string, string | string[]>;
}

const newSid = (prefix: string) => prefix + randomBytes(16).toString('hex');
const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
const E164 = /^\+[1-9]\d{6,14}$/;

interface Verb {
  name: string;
  attrs: Record<string, string>;
  body: string;
}

const decode = (text: string) => text.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&');

/** Top-level verbs of a <Response>. A regex reader is enough for the flat TwiML twilio-node writes; it is not a general XML parser. */
export function parseTwiml(xml: string): Verb[] {
  const response = /<Response\s*\/>|<Response>([\s\S]*)<\/Response>/.exec(xml);
  if (!response) throw new Error(`not TwiML: ${xml.slice(0, 200)}`);
  const inner = response[1] ?? '';
  const verbs: Verb[] = [];
  const pattern = /<([A-Za-z]+)((?:\s+[A-Za-z]+="[^"]*")*)\s*(?:\/>|>([\s\S]*?)<\/\1>)/g;
  for (const match of inner.matchAll(pattern)) {
    const attrs: Record<string, string> = {};
    for (const attr of (match[2] ?? '').matchAll(/([A-Za-z]+)="([^"]*)"/g)) attrs[attr[1]!] = decode(attr[2]!);
    verbs.push({ name: match[1]!, attrs, body: match[3] ?? '' });
  }
  return verbs;
}

export function createFakeTwilioVoice(internals: VoiceInternals): {
  voice: FakeTwilioVoice;
  /** Handles a REST request if it is a voice one; false lets the messaging routes try. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL, raw: string): Promise<boolean>;
  /** Control API for a fake in another process: POST /_fake/voice/play-inbound {voiceUrl, from, to, recordingPath?, dial?, statusCallbackUrl?}. */
  control(route: string, body: unknown): Promise<{ status: number; json: unknown } | undefined>;
} {
  const { accountSid } = internals;
  const calls: CreatedCall[] = [];
  const mediaRequests: MediaRequest[] = [];
  const recordings = new Map<string, Recording>();
  const faults: MediaFault[] = [];
  let audio: { path: string; contentType: string } | undefined;

  const recordingUrl = (sid: string) => `${internals.baseUrl()}/${internals.apiVersion}/Accounts/${accountSid}/Recordings/${sid}`;

  function newRecording(callSid: string, options: PlayOptions): Recording {
    const path = options.recordingPath ?? audio?.path;
    if (!path) throw new Error('no recording audio: call setRecordingAudio or pass recordingPath');
    const recording: Recording = { sid: newSid('RE'), callSid, path, contentType: options.recordingContentType ?? audio?.contentType ?? 'audio/x-wav' };
    recordings.set(recording.sid, recording);
    return recording;
  }

  function baseCallForm(callSid: string, from: string, to: string, direction: string, status: string): Record<string, string> {
    return { AccountSid: accountSid, ApiVersion: internals.apiVersion, CallSid: callSid, CallStatus: status, Called: to, Caller: from, Direction: direction, From: from, To: to };
  }

  async function post(steps: PlayStep[], url: string, form: Record<string, string>): Promise<PlayStep> {
    const answer = await internals.postForm(url, undefined, form);
    const step = { url, ...answer };
    steps.push(step);
    return step;
  }

  function recordingStatusForm(recording: Recording, durationSec: number, source: string, status = 'completed'): Record<string, string> {
    return {
      AccountSid: accountSid,
      CallSid: recording.callSid,
      ErrorCode: '0',
      RecordingChannels: source === 'DialVerb' ? '2' : '1',
      RecordingDuration: String(durationSec),
      RecordingSid: recording.sid,
      RecordingSource: source,
      RecordingStartTime: new Date().toUTCString(),
      RecordingStatus: status,
      RecordingTrack: 'both',
      RecordingUrl: recordingUrl(recording.sid),
    };
  }

  /** Runs our TwiML from `documentUrl`'s answer, following action URLs, until the call ends. */
  async function execute(played: PlayedCall, documentUrl: string, xml: string, base: Record<string, string>, options: PlayOptions): Promise<void> {
    let verbs = parseTwiml(xml);
    let current = documentUrl;
    for (let guard = 0; guard < 20; guard++) {
      let next: { url: string; xml: string } | undefined;
      for (const verb of verbs) {
        const resolve = (target: string | undefined) => (target ? new URL(target, current).toString() : undefined);
        if (verb.name === 'Say' || verb.name === 'Pause') {
          played.verbs.push(verb.name);
          continue;
        }
        if (verb.name === 'Hangup') {
          played.verbs.push('Hangup');
          return;
        }
        if (verb.name === 'Dial') {
          const outcome = options.dial ?? 'answer';
          played.verbs.push(`Dial:${outcome}`);
          const number = /<Number[^>]*>([^<]+)<\/Number>/.exec(verb.body)?.[1];
          if (!number || !E164.test(decode(number).trim())) throw new Error(`<Dial> without a valid <Number>: ${verb.body}`);
          const dialCallStatus = outcome === 'answer' ? 'completed' : outcome;
          const recorded = outcome === 'answer' && (verb.attrs.record ?? 'do-not-record').startsWith('record-from');
          const recording = recorded ? newRecording(base.CallSid!, options) : undefined;
          const durationSec = options.recordingDurationSec ?? 5;
          const action = resolve(verb.attrs.action);
          if (action) {
            const form: Record<string, string> = { ...base, DialCallSid: newSid('CA'), DialCallStatus: dialCallStatus, DialCallDuration: String(outcome === 'answer' ? durationSec : 0) };
            if (recording) Object.assign(form, { RecordingSid: recording.sid, RecordingUrl: recordingUrl(recording.sid), RecordingDuration: String(durationSec) });
            const step = await post(played.steps, action, form);
            next = { url: action, xml: step.body };
          }
          const callback = resolve(verb.attrs.recordingStatusCallback);
          if (recording) {
            played.recordingSids.push(recording.sid);
            if (callback) await post(played.steps, callback, recordingStatusForm(recording, durationSec, 'DialVerb'));
          }
          if (next) break;
          continue;
        }
        if (verb.name === 'Record') {
          played.verbs.push('Record');
          const recording = newRecording(base.CallSid!, options);
          const durationSec = options.recordingDurationSec ?? 5;
          played.recordingSids.push(recording.sid);
          // Without an action Twilio requests the current document again; ours always set one.
          const action = resolve(verb.attrs.action) ?? current;
          const step = await post(played.steps, action, { ...base, Digits: 'hangup', RecordingDuration: String(durationSec), RecordingSid: recording.sid, RecordingUrl: recordingUrl(recording.sid) });
          const callback = resolve(verb.attrs.recordingStatusCallback);
          if (callback) await post(played.steps, callback, recordingStatusForm(recording, durationSec, 'RecordVerb'));
          next = { url: action, xml: step.body };
          break;
        }
        throw new Error(`the fake does not understand <${verb.name}>`);
      }
      if (!next) return;
      current = next.url;
      verbs = parseTwiml(next.xml);
    }
    throw new Error('TwiML redirected more than 20 times');
  }

  const voice: FakeTwilioVoice = {
    calls,
    mediaRequests,
    setRecordingAudio(path, contentType = 'audio/x-wav') {
      audio = { path, contentType };
    },
    enqueueMediaFault(fault) {
      faults.push(fault);
    },
    async playInboundCall({ voiceUrl, from, to, callSid, ...options }) {
      const sid = callSid ?? newSid('CA');
      const played: PlayedCall = { callSid: sid, steps: [], recordingSids: [], verbs: [] };
      const base = baseCallForm(sid, from, to, 'inbound', 'ringing');
      const first = await post(played.steps, voiceUrl, base);
      if (first.status !== 200) return played;
      await execute(played, voiceUrl, first.body, { ...base, CallStatus: 'in-progress' }, options);
      if (options.statusCallbackUrl) {
        await post(played.steps, options.statusCallbackUrl, { ...base, CallStatus: 'completed', CallDuration: String((options.recordingDurationSec ?? 5) + 3) });
      }
      return played;
    },
    async playOutboundCall(callSid, options = {}) {
      const call = calls.find((c) => c.sid === callSid);
      if (!call) throw new Error(`no call ${callSid} was created`);
      const played: PlayedCall = { callSid, steps: [], recordingSids: [], verbs: [] };
      const base = baseCallForm(callSid, call.from, call.to, 'outbound-api', 'in-progress');
      const firstLeg = options.firstLeg ?? 'answer';
      if (firstLeg === 'answer') {
        const answer = await post(played.steps, call.url, base);
        if (answer.status === 200) await execute(played, call.url, answer.body, base, options);
      }
      if (call.statusCallback) {
        const status = firstLeg === 'answer' ? 'completed' : firstLeg;
        await post(played.steps, call.statusCallback, { ...base, CallStatus: status, CallDuration: String(firstLeg === 'answer' ? (options.recordingDurationSec ?? 5) + 2 : 0) });
      }
      return played;
    },
    async sendRecordingStatus({ url, callSid, recordingSid, status = 'completed', durationSec = 5, recordingPath }) {
      let recording = recordingSid ? recordings.get(recordingSid) : undefined;
      if (!recording) {
        recording = newRecording(callSid, { recordingPath });
        if (recordingSid) {
          recordings.delete(recording.sid);
          recording.sid = recordingSid;
          recordings.set(recordingSid, recording);
        }
      }
      const answer = await internals.postForm(url, undefined, recordingStatusForm(recording, durationSec, 'DialVerb', status));
      return { status: answer.status, recordingSid: recording.sid };
    },
    sendVoiceWebhook({ url, form }) {
      return internals.postForm(url, undefined, form);
    },
  };

  async function serveMedia(req: IncomingMessage, res: ServerResponse, sid: string, path: string): Promise<void> {
    const authorized = internals.isAuthorized(req);
    const entry: MediaRequest = { recordingSid: sid, path, authorized, ...(req.headers.range ? { range: req.headers.range } : {}), outcome: 'served' };
    mediaRequests.push(entry);
    if (!authorized) {
      entry.outcome = 'unauthorized';
      return internals.sendError(res, { status: 401, code: 20003, message: 'Authenticate' });
    }
    const recording = recordings.get(sid);
    if (!recording) {
      entry.outcome = 'not-found';
      return internals.sendError(res, { status: 404, code: 20404, message: `The requested resource ${path} was not found` });
    }
    const fault = faults.shift();
    const bytes = await readFile(recording.path);
    if (fault?.kind === 'status') {
      entry.outcome = 'fault';
      return internals.sendError(res, { status: fault.status, code: fault.status === 404 ? 20404 : 20500, message: 'Injected fault' });
    }
    if (fault?.kind === 'drop') {
      // Headers and half the body, then the connection dies: the downloader must not keep a truncated file.
      entry.outcome = 'fault';
      res.writeHead(200, { 'content-type': recording.contentType, 'content-length': String(bytes.length) });
      res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => req.socket.destroy());
      return;
    }
    res.writeHead(200, { 'content-type': recording.contentType, 'content-length': String(bytes.length) });
    res.end(bytes);
  }

  function createCall(res: ServerResponse, raw: string): void {
    const form = internals.parseForm(raw);
    const to = first(form.To);
    const from = first(form.From);
    const url = first(form.Url);
    if (!to || !E164.test(to)) return internals.sendError(res, { status: 400, code: 21211, message: `The 'To' number ${to ?? ''} is not a valid phone number.` });
    if (!from) return internals.sendError(res, { status: 400, code: 21212, message: "The 'From' number is required." });
    if (!url && !first(form.Twiml)) return internals.sendError(res, { status: 400, code: 21205, message: 'Url parameter is required.' });
    const sid = newSid('CA');
    const statusCallback = first(form.StatusCallback);
    calls.push({ sid, to, from, url: url ?? '', ...(statusCallback ? { statusCallback } : {}), form });
    const now = new Date().toUTCString().replace('GMT', '+0000');
    internals.sendJson(res, 201, {
      sid,
      account_sid: accountSid,
      api_version: internals.apiVersion,
      date_created: now,
      date_updated: now,
      direction: 'outbound-api',
      from,
      from_formatted: from,
      to,
      to_formatted: to,
      status: 'queued',
      uri: `/${internals.apiVersion}/Accounts/${accountSid}/Calls/${sid}.json`,
      subresource_uris: { recordings: `/${internals.apiVersion}/Accounts/${accountSid}/Calls/${sid}/Recordings.json` },
    });
  }

  const playInboundSchema = z.strictObject({
    voiceUrl: z.url(),
    from: z.string().regex(E164),
    to: z.string().regex(E164),
    recordingPath: z.string().min(1).optional(),
    dial: z.enum(['answer', 'no-answer', 'busy', 'failed']).optional(),
    statusCallbackUrl: z.url().optional(),
    recordingDurationSec: z.number().int().min(1).max(3600).optional(),
  });

  return {
    voice,
    async control(route, body) {
      if (route !== 'POST /_fake/voice/play-inbound') return undefined;
      const parsed = playInboundSchema.safeParse(body);
      if (!parsed.success) return { status: 400, json: { error: z.prettifyError(parsed.error) } };
      try {
        const played = await voice.playInboundCall(parsed.data);
        return { status: 200, json: played };
      } catch (error) {
        return { status: 502, json: { error: `playing the call failed: ${error instanceof Error ? error.message : String(error)}` } };
      }
    },
    async handle(req, res, url, raw) {
      const media = /^\/2010-04-01\/Accounts\/([^/]+)\/Recordings\/(RE[0-9a-f]{32})(\.wav|\.mp3)?$/.exec(url.pathname);
      if (media && req.method === 'GET') {
        if (media[1] !== accountSid) return internals.sendError(res, { status: 404, code: 20404, message: 'not found' }), true;
        await serveMedia(req, res, media[2]!, url.pathname);
        return true;
      }
      const callsRoute = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls\.json$/.exec(url.pathname);
      if (callsRoute && req.method === 'POST') {
        if (!internals.isAuthorized(req)) return internals.sendError(res, { status: 401, code: 20003, message: 'Authenticate' }), true;
        if (callsRoute[1] !== accountSid) return internals.sendError(res, { status: 404, code: 20404, message: 'not found' }), true;
        createCall(res, raw);
        return true;
      }
      return false;
    },
  };
}
