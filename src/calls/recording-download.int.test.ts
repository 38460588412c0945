import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalMediaStorage } from './media-storage.ts';
import { DownloadError, downloadRecording, type DownloadSettings } from './recording-download.ts';

describe('downloadRecording', () => {
  let dir: string;
  let server: Server;
  let origin: string;
  const seen: Array<{ url: string; authorization?: string }> = [];
  let answer: { status: number; type: string; body: Buffer } = { status: 200, type: 'audio/x-wav', body: Buffer.alloc(100, 1) };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'download-'));
    seen.length = 0;
    server = createServer((req, res) => {
      seen.push({ url: req.url!, authorization: req.headers.authorization });
      res.writeHead(answer.status, { 'content-type': answer.type, 'content-length': String(answer.body.length) }).end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterEach(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  const settings = (overrides: Partial<DownloadSettings> = {}): DownloadSettings => ({
    accountSid: 'AC' + 'c'.repeat(32),
    authToken: 'secret',
    allowedOrigins: [origin],
    format: 'wav',
    maxBytes: 1000,
    timeoutMs: 5_000,
    ...overrides,
  });
  const fetchInto = (s: DownloadSettings, sourceUrl = `${origin}/2010-04-01/Accounts/x/Recordings/RE1`) =>
    downloadRecording(s, createLocalMediaStorage(dir), { recordingId: 'r1', sourceUrl, signal: new AbortController().signal });

  it('asks for the configured format with Basic auth and stores the bytes under our key', async () => {
    const stored = await fetchInto(settings());
    expect(stored).toEqual({ storageKey: 'recordings/r1.wav', contentType: 'audio/x-wav', sizeBytes: 100 });
    expect(seen).toEqual([{ url: '/2010-04-01/Accounts/x/Recordings/RE1.wav', authorization: `Basic ${Buffer.from(`AC${'c'.repeat(32)}:secret`).toString('base64')}` }]);
  });

  it('never sends the credentials to an origin it was not told to trust', async () => {
    const error = await fetchInto(settings({ allowedOrigins: ['https://api.twilio.com'] })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error).toMatchObject({ permanent: true });
    expect(seen).toEqual([]);
  });

  it('refuses what is not audio and what is too large, for good, keeping no file; a 5xx is worth retrying', async () => {
    answer = { status: 200, type: 'text/html', body: Buffer.from('<html>') };
    await expect(fetchInto(settings())).rejects.toMatchObject({ permanent: true, message: expect.stringContaining('not audio') });
    answer = { status: 200, type: 'audio/mpeg', body: Buffer.alloc(2000) };
    await expect(fetchInto(settings())).rejects.toMatchObject({ permanent: true, message: expect.stringContaining('over the 1000-byte limit') });
    answer = { status: 503, type: 'application/json', body: Buffer.from('{}') };
    await expect(fetchInto(settings())).rejects.toMatchObject({ permanent: false, message: 'download answered HTTP 503' });
    expect(await readdir(dir)).toEqual([]);
  });
});
