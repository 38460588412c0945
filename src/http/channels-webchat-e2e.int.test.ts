import { afterEach, describe, expect, it, vi } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });
const WAIT_MS = 45_000;

/**
 * Issue 3's proof, first half, over real HTTP: one patient writes by SMS, then Messenger, then web chat; a
 * coordinator replies after each message, and each reply arrives on that latest medium, in order, exactly once.
 * (Window-closing fallback and STOP are proved in channels-e2e.int.test.ts.)
 */
describe.each(backends())('one patient across SMS, Messenger and web chat on $name', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it('each reply goes out on the medium the patient last wrote from', async () => {
    h = await startHarness(backend, { webchat: true, meta: {}, fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 } });
    const meta = h.meta!;
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.startRelay();
    const phone = '+15557654321';
    const psid = '3141592653589793';

    expect((await h.sendSms(phone, 'first, by text')).status).toBe(200);
    const patientId: string = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId;
    const reply = async (body: string) => {
      const response = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body } });
      expect(response.status, response.text).toBe(201);
      return response.json as { channel: string; channelReason: string };
    };

    expect(await reply('reply by sms')).toMatchObject({ channel: 'sms', channelReason: 'last used sms' });
    await eventually(() => h.fake.received.some((m) => m.body === 'reply by sms'), { timeoutMs: WAIT_MS, what: 'SMS reply' });

    const linked = await h.api('POST', `/api/patients/${patientId}/identities`, { token: ada.token, body: { channel: 'messenger', address: psid } });
    expect(linked.status, linked.text).toBeLessThan(300);
    expect((await meta.sendMessengerText({ webhookUrl: `${h.baseUrl}/webhooks/messenger`, psid, text: 'now on Messenger' })).status).toBe(200);
    expect(await reply('reply on messenger')).toMatchObject({ channel: 'messenger', channelReason: 'last used messenger' });
    await eventually(() => meta.received.some((m) => m.api === 'messenger' && m.json.message?.text === 'reply on messenger'), { timeoutMs: WAIT_MS, what: 'Messenger reply' });

    // The coordinator sends a chat link (it goes out on Messenger, the current medium); the patient writes from the page.
    const link = await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: ada.token, body: { send: true } });
    expect(link.status, link.text).toBe(201);
    expect(link.json.message).toMatchObject({ channel: 'messenger' });
    const token = decodeURIComponent(new URL(link.json.url).hash.slice(1));
    const chat = await h.api('POST', '/chat/api/messages', { token, body: { clientMessageId: 'e2e-chat-0001', body: 'and now from the web chat' } });
    expect(chat.status, chat.text).toBeLessThan(300);
    expect(await reply('reply in the web chat')).toMatchObject({ channel: 'webchat', channelReason: 'last used webchat' });

    // The web chat "provider" is our stream: the reply is there once, and it went nowhere else.
    const streamBodies = async () => {
      const response = await fetch(`${h.baseUrl}/chat/api/stream`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(3_000) }).catch(() => null);
      if (!response?.body) return '';
      const reader = response.body.getReader();
      let text = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += new TextDecoder().decode(value);
          if (text.includes('reply in the web chat')) break;
        }
      } catch {
        // the abort ends the read; whatever arrived is in text
      }
      await reader.cancel().catch(() => {});
      return text;
    };
    await eventually(async () => (await streamBodies()).includes('reply in the web chat'), { timeoutMs: WAIT_MS, what: 'web chat reply on the stream' });
    await eventually(
      async () => {
        const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items as any[];
        return items.find((i) => i.type === 'message' && i.body === 'reply in the web chat' && i.status !== 'pending' && i.status !== 'sending');
      },
      { timeoutMs: WAIT_MS, what: 'web chat reply handed over' },
    );

    // Exactly once and in order, per medium, from what crossed each wire.
    expect(h.fake.received.filter((m) => m.to === phone).map((m) => m.body)).toEqual(['reply by sms']);
    const messengerTexts = meta.received.filter((m) => m.api === 'messenger').map((m) => m.json.message?.text);
    expect(messengerTexts[0]).toBe('reply on messenger');
    expect(messengerTexts[1]).toContain(link.json.url);
    expect(messengerTexts).toHaveLength(2);
    expect(messengerTexts.some((t) => t === 'reply in the web chat')).toBe(false);
  });
});
