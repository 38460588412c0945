import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

describe.each(backends())('consent keywords and the ledger on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend, { meta: {} });
  });
  afterEach(async () => {
    await h.close();
  });

  const patientOf = async (address: string) =>
    (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [address])).rows[0]!.patient_id;

  it('STOP opts the identity out with its source message, a reply is refused with the reason, START opts back in', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const phone = '+15552220001';
    await h.sendSms(phone, 'hello');
    const patientId = await patientOf(phone);
    const stop = await h.sendSms(phone, ' Stop. ', 'SM' + 'f'.repeat(32));
    expect(stop.status).toBe(200);
    // A redelivery of the STOP records nothing more.
    expect((await h.sendSms(phone, ' Stop. ', 'SM' + 'f'.repeat(32))).status).toBe(200);

    const refused = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'are you there?' } });
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ code: 'no_channel', message: expect.stringContaining('sms +15552220001 opted out') });

    // Words that merely contain a keyword change nothing.
    await h.sendSms(phone, 'please stop calling me at work');
    expect((await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'x' } })).status).toBe(409);

    await h.sendSms(phone, 'START');
    // "Yes" while opted in is an answer, not a consent change: nothing is recorded.
    await h.sendSms(phone, 'Yes');
    const allowed = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'welcome back' } });
    expect(allowed.status).toBe(201);

    const identities = (await h.api('GET', `/api/patients/${patientId}/consent`, { token: ada.token })).json.identities;
    const stopMessage = (await h.database.db.query<{ id: string }>(`SELECT id FROM messages WHERE provider_message_id = $1`, ['SM' + 'f'.repeat(32)])).rows[0]!.id;
    expect(identities).toMatchObject([
      { channel: 'sms', address: phone, optedOut: false, ledger: [{ change: 'opt_out', keyword: 'STOP', sourceMessageId: stopMessage }, { change: 'opt_in', keyword: 'START' }] },
    ]);
    const timeline = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items;
    expect(timeline.filter((i: any) => i.type === 'event' && i.kind === 'consent').map((i: any) => i.detail.change)).toEqual(['opt_out', 'opt_in']);
  });

  it.each(['UNSUBSCRIBE', 'end', 'Quit', 'STOPALL', 'revoke', 'OPTOUT', 'cancel'])('%s opts out', async (keyword) => {
    const phone = '+15552220002';
    await h.sendSms(phone, keyword);
    const row = await h.database.db.query<{ opted_out: boolean }>(`SELECT opted_out FROM channel_identities WHERE address = $1`, [phone]);
    expect(row.rows[0]!.opted_out).toBe(true);
  });

  it('HELP gets the configured reply as an automatic message that leaves the patient waiting', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const phone = '+15552220003';
    await h.startRelay();
    await h.sendSms(phone, 'help');
    const patientId = await patientOf(phone);
    const helpReply = await eventually(() => h.fake.received.find((m) => m.to === phone), { what: 'the HELP reply' });
    expect(helpReply.body).toContain('Reply STOP');
    const inbox = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients;
    expect(inbox.find((p: any) => p.patientId === patientId).waitingSince).not.toBeNull();
    const timeline = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items;
    expect(timeline.find((i: any) => i.type === 'message' && i.direction === 'outbound')).toMatchObject({ automatic: true, channel: 'sms', authorId: null });
  });

  it('WhatsApp STOP opts out only the WhatsApp identity', async () => {
    const meta = h.meta!;
    const hook = `${h.baseUrl}/webhooks/whatsapp`;
    expect((await meta.sendWhatsAppText({ webhookUrl: hook, from: '15552220004', text: 'STOP' })).status).toBe(200);
    const row = await h.database.db.query<{ channel: string; opted_out: boolean }>(`SELECT channel, opted_out FROM channel_identities WHERE address = '+15552220004'`);
    expect(row.rows).toEqual([{ channel: 'whatsapp', opted_out: true }]);
  });

  it('the relay never sends to an identity that opted out after the reply was written', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const phone = '+15552220005';
    await h.sendSms(phone, 'hi');
    const patientId = await patientOf(phone);
    const written = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'queued before STOP' } });
    expect(written.status).toBe(201);
    await h.sendSms(phone, 'STOP');
    await h.startRelay();
    const failed = await eventually(async () => {
      const row = (await h.database.db.query<any>(`SELECT status, error_code, error_message FROM messages WHERE id = $1`, [written.json.messageId])).rows[0];
      return row.status === 'failed' ? row : null;
    }, { what: 'the reply refused' });
    expect(failed).toMatchObject({ error_code: 'opted_out', error_message: expect.stringContaining('no fallback') });
    expect(h.fake.received.filter((m) => m.to === phone)).toEqual([]);
  });

  it('one number in two spellings is one identity', async () => {
    await h.sendSms('(555) 222-0006', 'first, in a local spelling');
    await h.sendSms('+1 555 222 0006', 'second, international');
    const rows = await h.database.db.query<{ address: string }>(`SELECT address FROM channel_identities WHERE channel = 'sms'`);
    expect(rows.rows).toEqual([{ address: '+15552220006' }]);
  });
});
