import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { z } from 'zod';

/**
 * A loopback speech-to-text API speaking OpenAI's audio transcription protocol, as the HTTP engine
 * (src/transcription/http-transcriber.ts) uses it through OpenAI's SDK: `POST /v1/audio/transcriptions`,
 * multipart/form-data with `file`, `model`, `response_format`, `timestamp_granularities[]`, Bearer auth; the
 * answer is `verbose_json` ({task, language, duration, text, segments[{id, start, end, text}]}), errors are
 * `{"error": {message, type, code}}`.
 *
 * What it "hears" comes from `recognise` (a real engine, for end-to-end tests) or else from `script` (a fixed
 * answer). One-shot faults, FIFO, for the next requests: an HTTP status (429 with Retry-After, 5xx), latency,
 * a hang (the client's timeout fires), or a dropped connection. Control over HTTP for another process:
 *   POST /_fake/faults/enqueue (Fault) · POST /_fake/script (Script) · GET /_fake/received
 */
export const FaultSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('status'), status: z.number().int().min(400).max(599), retryAfterSec: z.number().int().min(0).optional() }),
  z.object({ kind: z.literal('latency'), ms: z.number().int().min(0).max(60_000) }),
  z.object({ kind: z.literal('hang') }),
  z.object({ kind: z.literal('drop') }),
]);
export type SttFault = z.infer<typeof FaultSchema>;

const ScriptSchema = z.object({
  text: z.string(),
  segments: z.array(z.object({ start: z.number(), end: z.number(), text: z.string() })).default([]),
});
export type SttScript = z.input<typeof ScriptSchema>;

export interface SttRequest {
  model: string | null;
  responseFormat: string | null;
  granularities: string[];
  fileName: string | null;
  bytes: number;
  /** From the WAV header, when the file is one. */
  sampleRate: number | null;
  channels: number | null;
}

export interface FakeStt {
  url: string;
  /** Every request that reached the transcription route, faulted ones included. */
  attempts: number;
  received: SttRequest[];
  enqueueFault(fault: SttFault): void;
  script(answer: SttScript): void;
  close(): Promise<void>;
}

export async function startFakeStt(options: { token: string; recognise?: (wav: Buffer) => Promise<{ text: string; segments: Array<{ start: number; end: number; text: string }> }> }): Promise<FakeStt> {
  const faults: SttFault[] = [];
  let scripted = ScriptSchema.parse({ text: '' });
  const sockets = new Set<Socket>();

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const apiError = (res: ServerResponse, status: number, message: string, type: string, headers: Record<string, string> = {}) =>
    json(res, status, { error: { message, type, param: null, code: null } }, headers);

  async function transcribe(req: IncomingMessage, res: ServerResponse): Promise<void> {
    fake.attempts += 1;
    const fault = faults.shift();
    if (fault?.kind === 'drop') return void req.socket.destroy();
    if (fault?.kind === 'hang') return; // never answers; the client's timeout ends it
    if (fault?.kind === 'latency') await new Promise((resolve) => setTimeout(resolve, fault.ms));
    if (fault?.kind === 'status') {
      return apiError(res, fault.status, `injected ${fault.status}`, fault.status === 429 ? 'rate_limit_exceeded' : 'server_error', fault.retryAfterSec === undefined ? {} : { 'retry-after': String(fault.retryAfterSec) });
    }
    if (req.headers.authorization !== `Bearer ${options.token}`) return apiError(res, 401, 'Incorrect API key provided', 'invalid_request_error');
    if (!(req.headers['content-type'] ?? '').startsWith('multipart/form-data')) return apiError(res, 400, 'expected multipart/form-data', 'invalid_request_error');
    // The platform's own multipart parser (undici's Request.formData), rather than a hand-written one.
    const form = await new Request('http://fake.local/', { method: 'POST', headers: req.headers as Record<string, string>, body: Readable.toWeb(req) as ReadableStream, duplex: 'half' } as RequestInit).formData();
    const file = form.get('file');
    const wav = file instanceof Blob ? Buffer.from(await file.arrayBuffer()) : null;
    const isWav = wav !== null && wav.length >= 44 && wav.toString('latin1', 0, 4) === 'RIFF' && wav.toString('latin1', 8, 12) === 'WAVE';
    fake.received.push({
      model: (form.get('model') as string | null) ?? null,
      responseFormat: (form.get('response_format') as string | null) ?? null,
      granularities: form.getAll('timestamp_granularities[]').map(String),
      fileName: file instanceof File ? file.name : null,
      bytes: wav?.length ?? 0,
      sampleRate: isWav ? wav.readUInt32LE(24) : null,
      channels: isWav ? wav.readUInt16LE(22) : null,
    });
    if (!wav || !form.get('model')) return apiError(res, 400, 'file and model are required', 'invalid_request_error');
    if (!isWav) return apiError(res, 400, 'Invalid file format.', 'invalid_request_error');
    const heard = options.recognise ? await options.recognise(wav) : scripted;
    const duration = (wav.length - 44) / (wav.readUInt32LE(28) || 1);
    json(res, 200, {
      task: 'transcribe',
      language: 'english',
      duration,
      text: heard.text,
      segments: heard.segments.map((segment, id) => ({ id, seek: 0, start: segment.start, end: segment.end, text: ` ${segment.text}`, tokens: [], temperature: 0, avg_logprob: -0.2, compression_ratio: 1, no_speech_prob: 0.01 })),
    });
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    if (req.method === 'POST' && path === '/_fake/faults/enqueue') {
      const parsed = FaultSchema.safeParse(body);
      if (!parsed.success) return json(res, 400, { error: z.prettifyError(parsed.error) });
      faults.push(parsed.data);
      return json(res, 200, { queued: faults.length });
    }
    if (req.method === 'POST' && path === '/_fake/script') {
      const parsed = ScriptSchema.safeParse(body);
      if (!parsed.success) return json(res, 400, { error: z.prettifyError(parsed.error) });
      scripted = parsed.data;
      return json(res, 200, scripted);
    }
    if (req.method === 'GET' && path === '/_fake/received') return json(res, 200, { attempts: fake.attempts, received: fake.received });
    return json(res, 404, { error: `no control route ${req.method} ${path}` });
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://fake.local').pathname;
    const handled = path.startsWith('/_fake/')
      ? control(req, res, path)
      : req.method === 'POST' && path === '/v1/audio/transcriptions'
        ? transcribe(req, res)
        : Promise.resolve(apiError(res, 404, `Unknown request URL: ${req.method} ${path}`, 'invalid_request_error'));
    handled.catch((error: unknown) => {
      if (!res.headersSent) json(res, 400, { error: { message: String(error), type: 'invalid_request_error' } });
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };

  const fake: FakeStt = {
    url: `http://127.0.0.1:${port}/v1`,
    attempts: 0,
    received: [],
    enqueueFault: (fault) => void faults.push(FaultSchema.parse(fault)),
    script: (answer) => void (scripted = ScriptSchema.parse(answer)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return fake;
}
