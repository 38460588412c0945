import { afterEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

const DAY_MS = 24 * 3_600_000;

/**
 * The proof, over real HTTP: one patient on SMS, Messenger and WhatsApp; each reply on the latest medium,
 * in order, exactly once; Messenger's window closes and replies fall back to SMS; STOP on SMS makes the fallback
 * skip SMS. The Messenger and WhatsApp identities are linked to the SMS patient through the identity-linking API.
 */
describe.each(backends())('one patient across SMS, Messenger and WhatsApp on $name', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it('replies on the last-used medium, falls back when a window closes, and skips an opted-out SMS', async () => {
    let offsetMs = 0;
    const now = () => new Date(Date.now() + offsetMs);
    h = await startHarness(backend, { fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 }, meta: { now, whatsappTemplate: { name: 'care_team_followup', languageCode: 'en_US' } } });
    const meta = h.meta!;
    const ada = await h.createCoordinator({ name: 'Ada' });
    const phone = '+15551234567';
    const psid = '24816030402948';
    const messengerHook = `${h.baseUrl}/webhooks/messenger`;
    const whatsappHook = `${h.baseUrl}/webhooks/whatsapp`;
    let relay = await h.startRelay();

    const reply = async (body: string) => {
      const response = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body } });
      expect(response.status, response.text).toBe(201);
      return response.json as { messageId: string; channel: string; channelReason: string };
    };
    const deliveries = () => [
      ...h.fake.received.map((m) => ({ at: m.receivedAtMs, channel: 'sms', to: m.to, text: m.body })),
      ...meta.received.map((m) => ({ at: m.receivedAtMs, channel: m.api, to: m.to, text: m.api === 'messenger' ? m.json.message.text : (m.json.text?.body ?? `template:${m.json.template.name}`) })),
    ];
    const link = async (channel: string, address: string) => {
      const response = await h.api('POST', `/api/patients/${patientId}/identities`, { token: ada.token, body: { channel, address } });
      expect(response.status, response.text).toBeLessThan(300);
    };
    const timelineMessage = async (id: string) => (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items.find((i: any) => i.id === id);

    // 1. SMS.
    expect((await h.sendSms(phone, 'Hi, it is Sam, by text')).status).toBe(200);
    const patientId: string = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId;
    const r1 = await reply('reply 1');
    expect(r1).toMatchObject({ channel: 'sms', channelReason: 'last used sms' });
    await eventually(() => h.fake.received.some((m) => m.body === 'reply 1'), { what: 'reply 1 by SMS' });

    // 2. Messenger, attached to the same patient.
    await link('messenger', psid);
    expect((await meta.sendMessengerText({ webhookUrl: messengerHook, psid, text: 'Same Sam, on Messenger' })).status).toBe(200);
    const r2 = await reply('reply 2');
    expect(r2).toMatchObject({ channel: 'messenger', channelReason: 'last used messenger' });
    const sent2 = await eventually(() => meta.received.find((m) => m.api === 'messenger' && m.json.message.text === 'reply 2'), { what: 'reply 2 on Messenger' });
    expect(sent2.json).toMatchObject({ recipient: { id: psid }, messaging_type: 'RESPONSE' });

    // 3. WhatsApp: attached in a local spelling; the webhook's digits-only number is the same identity.
    await link('whatsapp', '(555) 123-4567');
    expect((await meta.sendWhatsAppText({ webhookUrl: whatsappHook, from: '15551234567', text: 'And on WhatsApp' })).status).toBe(200);
    const r3 = await reply('reply 3');
    expect(r3).toMatchObject({ channel: 'whatsapp', channelReason: 'last used whatsapp' });
    const sent3 = await eventually(() => meta.received.find((m) => m.api === 'whatsapp' && m.json.text?.body === 'reply 3'), { what: 'reply 3 on WhatsApp' });
    expect(sent3.to).toBe('+15551234567');

    // 4. Messenger again, the latest medium.
    expect((await meta.sendMessengerText({ webhookUrl: messengerHook, psid, text: 'Back on Messenger' })).status).toBe(200);
    const r4 = await reply('reply 4');
    expect(r4.channel).toBe('messenger');
    await eventually(() => meta.received.some((m) => m.api === 'messenger' && m.json.message.text === 'reply 4'), { what: 'reply 4 on Messenger' });

    // 5. A reply written while Messenger's window was open but sent after it closed is re-targeted by the relay;
    //    one written after it closed is sent on SMS from the start. Both in order, once each.
    await relay.stop();
    const r5 = await reply('reply 5, written in the window');
    expect(r5.channel).toBe('messenger');
    offsetMs = 8 * DAY_MS;
    meta.setClock(now());
    relay = await h.startRelay();
    const r6 = await reply('reply 6, after the window');
    expect(r6.channel).toBe('sms');
    expect(r6.channelReason).toMatch(/^fell back to sms \(next most recently used\): messenger: outside its 7 days window.*; whatsapp: outside its 24 h window/);
    await eventually(() => h.fake.received.filter((m) => m.body.startsWith('reply 5') || m.body.startsWith('reply 6')).length === 2, { what: 'replies 5 and 6 by SMS' });
    const moved = await eventually(async () => {
      const item = await timelineMessage(r5.messageId);
      return item?.channel === 'sms' && item.providerMessageId ? item : null;
    }, { what: 'reply 5 re-targeted' });
    expect(moved.channelReason).toMatch(/^messenger failed permanently \(outside_window\); fell back to sms/);
    expect(moved.channelHistory).toMatchObject([{ channel: 'messenger', address: psid, errorCode: 'outside_window' }]);

    // 6. STOP on SMS: the fallback now skips SMS too; only WhatsApp's approved template can reach the patient.
    expect((await h.sendSms(phone, 'STOP')).status).toBe(200);
    const r7 = await reply('reply 7');
    expect(r7.channel).toBe('whatsapp');
    expect(r7.channelReason).toMatch(/sms \+15551234567 opted out/);
    const sent7 = await eventually(() => meta.received.find((m) => m.api === 'whatsapp' && m.json.type === 'template'), { what: 'the template on WhatsApp' });
    expect(sent7.json.template).toMatchObject({ name: 'care_team_followup', language: { code: 'en_US' } });

    // Each reply arrived once, on the medium recorded for it, in the order written; nothing went to SMS after STOP.
    const expected = [
      ['sms', 'reply 1'],
      ['messenger', 'reply 2'],
      ['whatsapp', 'reply 3'],
      ['messenger', 'reply 4'],
      ['sms', 'reply 5, written in the window'],
      ['sms', 'reply 6, after the window'],
      ['whatsapp', 'template:care_team_followup'],
    ];
    await eventually(() => deliveries().length >= expected.length, { what: 'all deliveries' });
    const got = deliveries().sort((a, b) => a.at - b.at).map((d) => [d.channel, d.text]);
    expect(got).toEqual(expected);

    const identities = (await h.api('GET', `/api/patients/${patientId}/consent`, { token: ada.token })).json.identities;
    expect(identities.find((i: any) => i.channel === 'sms')).toMatchObject({ optedOut: true, ledger: [{ change: 'opt_out', keyword: 'STOP', source: 'keyword' }] });
    expect(identities.find((i: any) => i.channel === 'whatsapp')).toMatchObject({ address: '+15551234567', optedOut: false });
  });
});
