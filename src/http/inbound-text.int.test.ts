import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAdapters } from '../channels/index.ts';
import { storableText } from '../core/text.ts';
import { backends } from '../test/databases.ts';
import { signTwilioRequest } from '../test/fake-twilio.ts';
import { startFakeTelnyx, type FakeTelnyx } from '../test/fake-telnyx.ts';
import { startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';

/**
 * Whatever text a channel hands us (NUL, lone surrogates, control characters, emoji …), every webhook answers
 * below 500, a refused request writes nothing, and an accepted message is stored exactly once, without the
 * characters PostgreSQL cannot hold and with their count in messages.removed_characters.
 */
const RUNS = 40;

// Weighted towards what PostgreSQL refuses, with every other UTF-16 code unit possible.
const unit = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom('\u0000', '\uD800', '\uDFFF', '\uDBFF\uDFFF', 'a', ' ', '\n', 'é', '😀') },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)) },
);
const text = fc.string({ unit, maxLength: 40 });
// Form-encoded channels (Twilio) cannot carry a lone surrogate: URL encoding turns it into U+FFFD first.
const wellFormed = (s: string) => Buffer.from(s, 'utf8').toString('utf8');
const formText = text.map(wellFormed);
const phoneLike = fc.oneof(fc.constant('+15550001234'), fc.string({ unit, maxLength: 16 }).map((s) => `+1555${s}`), text);

let sequence = 0;
const uniqueId = (prefix: string) => `${prefix}${Date.now().toString(36)}${(sequence++).toString(36)}`;

describe.each(backends())('inbound text PostgreSQL cannot store, on every channel, on $name', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backend, { meta: {}, webchat: true, calls: { media: { kind: 'local', dir: '/tmp/switchboard-inbound-text' } } });
  });
  afterAll(async () => {
    await h.close();
  });

  const db = () => h.database.db;
  const rowCounts = async () =>
    (
      await db().query<{ n: string }>(
        `SELECT (SELECT count(*) FROM messages) || '/' || (SELECT count(*) FROM patients) || '/' || (SELECT count(*) FROM channel_identities) || '/' || (SELECT count(*) FROM calls) AS n`,
      )
    ).rows[0]!.n;

  /** Checks one delivery: below 500; refused → nothing written; accepted → exactly one row, cleaned, counted. */
  async function checkDelivery(args: { send: () => Promise<number>; provider: string; providerMessageId: string; body: string }): Promise<void> {
    const before = await rowCounts();
    const status = await args.send();
    expect(status, `answer for ${JSON.stringify(args.body)}`).toBeLessThan(500);
    if (status >= 400) {
      expect(await rowCounts()).toBe(before);
      return;
    }
    const again = await args.send(); // a provider retry
    expect(again).toBeLessThan(300);
    const expected = storableText(args.body);
    const stored = await db().query<{ body: string; removed_characters: number }>(
      `SELECT body, removed_characters FROM messages WHERE provider = $1 AND provider_message_id = $2`,
      [args.provider, storableText(args.providerMessageId).text],
    );
    expect(stored.rows).toHaveLength(1);
    expect(stored.rows[0]!.body).toBe(expected.text);
    expect(stored.rows[0]!.removed_characters).toBeGreaterThanOrEqual(expected.removed);
  }

  it('Twilio SMS', async () => {
    await fc.assert(
      fc.asyncProperty(formText, phoneLike.map(wellFormed), async (body, from) => {
        const sid = uniqueId('SM');
        await checkDelivery({ provider: 'twilio', providerMessageId: sid, body, send: async () => (await h.sendSms(from, body, sid)).status });
      }),
      { numRuns: RUNS },
    );
  });

  it('Messenger', async () => {
    await fc.assert(
      fc.asyncProperty(text, text, async (body, psidSuffix) => {
        const mid = uniqueId('m_');
        const psid = `2${psidSuffix}`;
        const send = async () => (await h.meta!.sendMessengerText({ webhookUrl: `${h.baseUrl}/webhooks/messenger`, psid, text: body, mid })).status;
        await checkDelivery({ provider: 'meta', providerMessageId: mid, body, send });
      }),
      { numRuns: RUNS },
    );
  });

  it('WhatsApp', async () => {
    await fc.assert(
      fc.asyncProperty(text, phoneLike, async (body, from) => {
        const id = uniqueId('wamid.');
        const send = async () => (await h.meta!.sendWhatsAppText({ webhookUrl: `${h.baseUrl}/webhooks/whatsapp`, from, text: body, id })).status;
        await checkDelivery({ provider: 'meta', providerMessageId: id, body, send });
      }),
      { numRuns: RUNS },
    );
  });

  it('web chat message API', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    expect((await h.sendSms('+15550009999', 'hello')).status).toBe(200);
    const patient = await db().query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = '+15550009999'`);
    const patientId = patient.rows[0]!.patient_id;
    const link = await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: ada.token, body: { send: false } });
    expect(link.status, link.text).toBe(201);
    const token = decodeURIComponent(new URL(link.json.url).hash.slice(1));
    await fc.assert(
      fc.asyncProperty(text, async (body) => {
        const clientMessageId = uniqueId('client-');
        const send = async () => (await h.api('POST', '/chat/api/messages', { token, body: { clientMessageId, body } })).status;
        // The page's messages are trimmed; one that is blank once cleaned is refused.
        await checkDelivery({ provider: 'webchat', providerMessageId: `${patientId}:${clientMessageId}`, body: body.trim(), send });
      }),
      { numRuns: RUNS },
    );
  });

  it('Twilio Voice incoming call', async () => {
    const url = `${h.baseUrl}/webhooks/twilio/voice`;
    await fc.assert(
      fc.asyncProperty(phoneLike.map(wellFormed), formText, async (from, callSidSuffix) => {
        const form = { AccountSid: TEST_TWILIO.accountSid, CallSid: `CA${callSidSuffix}${uniqueId('')}`, From: from, To: TEST_TWILIO.fromNumber, CallStatus: 'ringing' };
        const send = async () => {
          const response = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(TEST_TWILIO.authToken, url, form) },
            body: new URLSearchParams(form).toString(),
          });
          return response.status;
        };
        const before = await rowCounts();
        const status = await send();
        expect(status).toBeLessThan(500);
        if (status >= 400) {
          expect(await rowCounts()).toBe(before);
          return;
        }
        expect(await send()).toBeLessThan(300);
        const calls = await db().query(`SELECT id FROM calls WHERE provider_call_sid = $1`, [storableText(form.CallSid).text]);
        expect(calls.rows).toHaveLength(1);
      }),
      { numRuns: RUNS },
    );
  });
});

describe.each(backends())('Telnyx SMS with text PostgreSQL cannot store, on $name', (backend) => {
  let h: Harness;
  let telnyx: FakeTelnyx;
  beforeAll(async () => {
    telnyx = await startFakeTelnyx({ apiKey: 'KEY_inbound_text_0123456789' });
    const adapters = buildAdapters({
      publicBaseUrl: 'http://127.0.0.1',
      sendTimeoutMs: 2_000,
      smsProvider: 'telnyx',
      telnyx: { apiKey: 'KEY_inbound_text_0123456789', publicKey: telnyx.publicKey, fromNumber: '+15005550006', apiBase: `${telnyx.url}/v2` },
    });
    h = await startHarness(backend, { app: { adapters } });
  });
  afterAll(async () => {
    await h.close();
    await telnyx.close();
  });

  it('Telnyx SMS', async () => {
    const count = async () => (await h.database.db.query<{ n: string }>(`SELECT (SELECT count(*) FROM messages) || '/' || (SELECT count(*) FROM patients) AS n`)).rows[0]!.n;
    await fc.assert(
      fc.asyncProperty(text, phoneLike, async (body, from) => {
        const id = uniqueId('tx-');
        const before = await count();
        const send = async () => (await telnyx.sendInboundSms({ webhookUrl: `${h.baseUrl}/webhooks/telnyx/sms`, from, to: '+15005550006', body, messageSid: id })).status;
        const status = await send();
        expect(status).toBeLessThan(500);
        if (status >= 400) {
          expect(await count()).toBe(before);
          return;
        }
        expect(await send()).toBeLessThan(300);
        const stored = await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE provider = 'telnyx' AND provider_message_id = $1`, [id]);
        expect(stored.rows.map((r) => r.body)).toEqual([storableText(body).text]);
      }),
      { numRuns: RUNS },
    );
  });
});
