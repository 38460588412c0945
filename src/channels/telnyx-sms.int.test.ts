import { createServer, type Server } from 'node:http';
import { TelnyxWebhook } from 'telnyx/lib/webhooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../errors.ts';
import { startFakeTelnyx, type FakeTelnyx } from '../test/fake-telnyx.ts';
import { eventually } from '../test/harness.ts';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import { createTelnyxSms, mapTelnyxStatus } from './telnyx-sms.ts';

const API_KEY = 'KEY0123456789ABCDEF_test';
const FROM = '+15005550006';
const PATIENT = '+15551234567';
const message = (body: string, to = PATIENT) => ({ channel: 'sms' as const, to, body, media: [] });
const sendOptions = (timeoutMs = 2_000) => ({ outboxId: 'o1', signal: AbortSignal.timeout(timeoutMs) });

/** A tiny webhook sink standing in for our server: records exactly what the fake sent. */
async function startSink(): Promise<{ url: string; requests: Array<{ headers: Record<string, string | string[] | undefined>; rawBody: Buffer }>; close(): Promise<void> }> {
  const requests: Array<{ headers: Record<string, string | string[] | undefined>; rawBody: Buffer }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, rawBody: Buffer.concat(chunks) });
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}/webhooks/telnyx/sms`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('Telnyx SMS adapter against the loopback fake', () => {
  let fake: FakeTelnyx;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let adapter: ChannelAdapter;

  beforeEach(async () => {
    fake = await startFakeTelnyx({ apiKey: API_KEY });
    sink = await startSink();
    adapter = createTelnyxSms({ apiKey: API_KEY, publicKey: fake.publicKey, fromNumber: FROM, apiBase: `${fake.url}/v2`, webhookUrl: sink.url, timeoutMs: 1_000 });
  });
  afterEach(async () => {
    await fake.close();
    await sink.close();
  });

  const asRequest = (r: { headers: WebhookRequest['headers']; rawBody: Buffer }): WebhookRequest => ({ publicUrl: sink.url, headers: r.headers, rawBody: r.rawBody });

  it('sends through the official SDK and Telnyx receives exactly that', async () => {
    const { providerMessageId } = await adapter.send(message('Hello café 🙂'), sendOptions());
    expect(fake.received).toHaveLength(1);
    expect(fake.received[0]).toMatchObject({ sid: providerMessageId, to: PATIENT, from: FROM, body: 'Hello café 🙂', webhookUrl: sink.url });
  });

  it('classifies 429 as retryable and never sent, 5xx / timeouts / dropped connections as unknown outcomes', async () => {
    const outcome = async (fault: Parameters<FakeTelnyx['enqueueFault']>[0]) => {
      fake.enqueueFault(fault);
      const error = await adapter.send(message('x'), sendOptions(500)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ProviderError);
      return (error as ProviderError).details;
    };
    expect(await outcome({ kind: 'status', status: 429 })).toMatchObject({ retryable: true, outcome: 'not-sent', code: '10011', httpStatus: 429, retryAfterMs: 1000 });
    expect(await outcome({ kind: 'status', status: 503 })).toMatchObject({ retryable: true, outcome: 'unknown', httpStatus: 503 });
    expect(await outcome({ kind: 'timeout' })).toMatchObject({ retryable: true, outcome: 'unknown' });
    expect(await outcome({ kind: 'drop-after-accept' })).toMatchObject({ retryable: true, outcome: 'unknown' });
    expect(await outcome({ kind: 'drop-before-accept' })).toMatchObject({ retryable: true, outcome: 'unknown' });
  });

  it('classifies opted-out and invalid recipients as permanent, bad credentials as wait-for-operator', async () => {
    fake.optOut(PATIENT);
    await expect(adapter.send(message('x'), sendOptions())).rejects.toMatchObject({ details: { retryable: false, code: '40300' } });
    await expect(adapter.send(message('x', '5551234'), sendOptions())).rejects.toMatchObject({ details: { retryable: false, code: '10016' } });
    const wrongKey = createTelnyxSms({ apiKey: 'wrong', publicKey: fake.publicKey, fromNumber: FROM, apiBase: `${fake.url}/v2`, webhookUrl: sink.url, timeoutMs: 1_000 });
    await expect(wrongKey.send(message('x', '+15550001111'), sendOptions())).rejects.toMatchObject({ details: { retryable: true, outcome: 'not-sent', code: '10009' } });
    expect(fake.received).toHaveLength(0);
  });

  it('finds a send whose answer was lost, and nothing for one that never arrived', async () => {
    const since = new Date(Date.now() - 1000);
    fake.enqueueFault({ kind: 'drop-before-accept' });
    await expect(adapter.send(message('lost'), sendOptions())).rejects.toBeInstanceOf(ProviderError);
    expect(await adapter.findSent(message('lost'), { since, signal: AbortSignal.timeout(2_000) })).toEqual([]);

    fake.enqueueFault({ kind: 'drop-after-accept' });
    await expect(adapter.send(message('ambiguous'), sendOptions())).rejects.toBeInstanceOf(ProviderError);
    const found = await adapter.findSent(message('ambiguous'), { since, signal: AbortSignal.timeout(2_000) });
    expect(found).toEqual([fake.received[0]!.sid]);
    // Another patient's sends are never candidates.
    await adapter.send(message('other', '+15559990000'), sendOptions());
    expect(await adapter.findSent(message('ambiguous'), { since, signal: AbortSignal.timeout(2_000) })).toEqual(found);
  });

  it('maps every Telnyx status with one switch; unknown ones are ignored', () => {
    expect(['queued', 'sending', 'sent', 'delivered', 'delivery_unconfirmed', 'delivery_failed', 'sending_failed', 'webhook_delivered', 'new'].map(mapTelnyxStatus)).toEqual([
      'queued',
      'sending',
      'sent',
      'delivered',
      'sent',
      'undelivered',
      'failed',
      undefined,
      undefined,
    ]);
  });

  it('parses signed inbound and status events, which the official SDK verifier also accepts', async () => {
    await fake.sendInboundSms({ webhookUrl: sink.url, from: PATIENT, to: FROM, body: 'Hi there', mediaUrls: ['https://media.example/a.jpg'], messageSid: 'in-1' });
    const { providerMessageId } = await adapter.send(message('reply'), sendOptions());
    await fake.sendStatusCallback({ messageSid: providerMessageId, status: 'sent' });
    await fake.sendStatusCallback({ messageSid: providerMessageId, status: 'delivery_failed' });
    expect(sink.requests).toHaveLength(3);

    for (const request of sink.requests) {
      const headers = Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)]));
      await expect(new TelnyxWebhook(fake.publicKey).verify(request.rawBody.toString('utf8'), headers)).resolves.toBeUndefined();
    }
    const events = sink.requests.flatMap((r) => adapter.parseWebhook(asRequest(r)));
    expect(events).toEqual([
      { kind: 'inbound', channel: 'sms', provider: 'telnyx', providerMessageId: 'in-1', from: PATIENT, to: FROM, body: 'Hi there', media: [{ url: 'https://media.example/a.jpg' }] },
      { kind: 'status', channel: 'sms', provider: 'telnyx', providerMessageId, status: 'sent' },
      { kind: 'status', channel: 'sms', provider: 'telnyx', providerMessageId, status: 'undelivered', errorCode: '40008', errorMessage: 'Error 40008' },
    ]);
  });

  it('rejects missing, wrong, tampered and stale signatures, and malformed bodies', async () => {
    await fake.sendInboundSms({ webhookUrl: sink.url, from: PATIENT, to: FROM, body: 'Hi' });
    const good = sink.requests[0]!;
    const code = (request: WebhookRequest) => {
      try {
        adapter.parseWebhook(request);
        return 'accepted';
      } catch (error) {
        return (error as { code?: string }).code;
      }
    };
    expect(code(asRequest(good))).toBe('accepted');
    expect(code({ ...asRequest(good), headers: { ...good.headers, 'telnyx-signature-ed25519': undefined } })).toBe('signature_missing');
    expect(code({ ...asRequest(good), rawBody: Buffer.from(good.rawBody.toString().replace('Hi', 'Ho')) })).toBe('signature_invalid');
    const other = await startFakeTelnyx({ apiKey: API_KEY });
    expect(code({ ...asRequest(good), headers: { ...good.headers, ...other.signWebhook(good.rawBody.toString()) } })).toBe('signature_invalid');
    await other.close();
    const stale = fake.signWebhook(good.rawBody.toString(), Math.floor(Date.now() / 1000) - 600);
    expect(code({ ...asRequest(good), headers: stale })).toBe('signature_stale');
    const notJson = 'not json';
    expect(code({ publicUrl: sink.url, headers: fake.signWebhook(notJson), rawBody: Buffer.from(notJson) })).toBe('invalid_webhook');
    const unknown = JSON.stringify({ data: { event_type: 'number_order.complete', payload: { id: 'x' } } });
    expect(adapter.parseWebhook({ publicUrl: sink.url, headers: fake.signWebhook(unknown), rawBody: Buffer.from(unknown) })).toEqual([]);
  });

  it('offers the same control API over HTTP as the Twilio fake', async () => {
    const post = (path: string, body: unknown) => fetch(fake.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/_fake/faults', { rate429: 2 })).status).toBe(400);
    expect((await post('/_fake/faults/enqueue', { kind: 'status', status: 429 })).status).toBe(200);
    await expect(adapter.send(message('x'), sendOptions())).rejects.toMatchObject({ details: { httpStatus: 429 } });
    expect((await post('/_fake/opt-out', { phone: PATIENT })).status).toBe(200);
    await expect(adapter.send(message('x'), sendOptions())).rejects.toMatchObject({ details: { code: '40300' } });
    expect((await post('/_fake/opt-in', { phone: PATIENT })).status).toBe(200);
    expect((await post('/_fake/auto-statuses', { statuses: ['sent', 'delivered'] })).status).toBe(200);
    const { providerMessageId } = await adapter.send(message('x'), sendOptions());
    const inbound = await post('/_fake/inbound-sms', { webhookUrl: sink.url, from: PATIENT, to: FROM, body: 'hello' });
    expect(inbound.status).toBe(200);
    expect((await post('/_fake/status-callback', { messageSid: providerMessageId, status: 'delivered' })).status).toBe(200);
    expect((await post('/_fake/status-callback', { messageSid: 'nope', status: 'delivered' })).status).toBe(400);
    const received = (await (await fetch(`${fake.url}/_fake/received`)).json()) as Array<{ sid: string }>;
    expect(received.map((r) => r.sid)).toEqual([providerMessageId]);
    expect((await fetch(`${fake.url}/_fake/faults`, { method: 'DELETE' })).status).toBe(200);
    // Auto statuses arrive signed at the message's webhook_url, as `message.sent` then `message.finalized`.
    await eventually(() => sink.requests.length >= 4, { what: 'two automatic status events' });
    const types = sink.requests.map((r) => JSON.parse(r.rawBody.toString()).data.event_type);
    expect(types.filter((t) => t !== 'message.received').sort()).toEqual(['message.finalized', 'message.finalized', 'message.sent']);
  });
});
