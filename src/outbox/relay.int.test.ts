import { afterEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { claimSends, registerWorker, WORKER_LOCK_SPACE } from '../db/outbox.ts';

describe.each(backends())('outbox relay on $name', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  /** Patients who wrote in by SMS, with a coordinator's token to reply as. */
  async function setup(patientCount: number) {
    h = await startHarness(backend);
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patients: Array<{ id: string; phone: string }> = [];
    for (let i = 0; i < patientCount; i++) {
      const phone = `+1555700${String(i).padStart(4, '0')}`;
      await h.sendSms(phone, 'hello');
      const row = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone]);
      patients.push({ id: row.rows[0]!.patient_id, phone });
    }
    const reply = async (patientId: string, body: string) => {
      const response = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body } });
      expect(response.status).toBe(201);
      return response.json as { messageId: string };
    };
    const messageRow = async (messageId: string) =>
      (await h.database.db.query<any>(`SELECT m.status, m.error_code, m.error_message, m.provider_message_id, o.state, o.attempts, o.needs_lookup FROM messages m JOIN outbox o ON o.message_id = m.id WHERE m.id = $1`, [messageId])).rows[0];
    return { ada, patients, reply, messageRow };
  }

  const receivedBodies = (to: string) => h.fake.received.filter((m) => m.to === to).map((m) => m.body);

  it('delivers each patient’s messages in log order, exactly once, under random provider latency', async () => {
    const { patients, reply } = await setup(4);
    h.fake.setFaults({ latencyMs: [0, 15] });
    const expected = new Map(patients.map((p) => [p.phone, Array.from({ length: 12 }, (_, i) => `${p.phone} #${i}`)]));
    for (let i = 0; i < 12; i++) for (const p of patients) await reply(p.id, expected.get(p.phone)![i]!);
    await h.startRelay();
    await h.startRelay();
    await eventually(() => h.fake.received.length >= 48, { what: 'all 48 sends' });
    for (const p of patients) expect(receivedBodies(p.phone)).toEqual(expected.get(p.phone));
    expect(h.fake.received).toHaveLength(48);
  });

  it('retries 429 with backoff and sends once', async () => {
    const { patients, reply, messageRow } = await setup(1);
    h.fake.enqueueFault({ kind: 'status', status: 429 });
    h.fake.enqueueFault({ kind: 'status', status: 429 });
    const { messageId } = await reply(patients[0]!.id, 'after two 429s');
    await h.startRelay();
    await eventually(async () => (await messageRow(messageId)).state === 'sent');
    expect(await messageRow(messageId)).toMatchObject({ attempts: 3, needs_lookup: false });
    expect(receivedBodies(patients[0]!.phone)).toEqual(['after two 429s']);
  });

  it('after a 5xx, looks the message up first, finds nothing, and resends once', async () => {
    const { patients, reply, messageRow } = await setup(1);
    h.fake.enqueueFault({ kind: 'status', status: 503 });
    const { messageId } = await reply(patients[0]!.id, 'after a 503');
    await h.startRelay();
    await eventually(async () => (await messageRow(messageId)).state === 'sent');
    expect((await messageRow(messageId)).attempts).toBe(2);
    expect(receivedBodies(patients[0]!.phone)).toEqual(['after a 503']);
  });

  it('a connection dropped after Twilio accepted is settled by lookup, not by a second send', async () => {
    const { patients, reply, messageRow } = await setup(1);
    h.fake.enqueueFault({ kind: 'drop-after-accept' });
    const { messageId } = await reply(patients[0]!.id, 'accepted then dropped');
    await reply(patients[0]!.id, 'the next one');
    await h.startRelay();
    await eventually(() => receivedBodies(patients[0]!.phone).length === 2);
    await eventually(async () => (await messageRow(messageId)).state === 'sent');
    expect(receivedBodies(patients[0]!.phone)).toEqual(['accepted then dropped', 'the next one']);
    expect((await messageRow(messageId)).provider_message_id).toBe(h.fake.received[0]!.sid);
  });

  it('a request that times out is looked up before any resend', async () => {
    const { patients, reply, messageRow } = await setup(1);
    h.fake.enqueueFault({ kind: 'timeout' });
    const { messageId } = await reply(patients[0]!.id, 'slow provider');
    await h.startRelay({ sendTimeoutMs: 300 });
    await eventually(async () => (await messageRow(messageId)).state === 'sent');
    expect(receivedBodies(patients[0]!.phone)).toEqual(['slow provider']);
  });

  it('a permanent error fails that message with its reason and does not block the next', async () => {
    const { ada, patients, reply, messageRow } = await setup(1);
    const phone = patients[0]!.phone;
    h.fake.optOut(phone);
    const first = await reply(patients[0]!.id, 'to an opted-out number');
    await h.startRelay();
    await eventually(async () => (await messageRow(first.messageId)).state === 'failed');
    // Twilio's 21610 is recorded as the identity's opt-out (consent ledger, source 'provider'); the patient's
    // START (which the fake also honours) opts it back in.
    expect((await h.api('POST', `/api/patients/${patients[0]!.id}/messages`, { token: ada.token, body: { body: 'while opted out' } })).status).toBe(409);
    expect((await h.sendSms(phone, 'START')).status).toBe(200);
    const second = await reply(patients[0]!.id, 'after opting back in');
    await eventually(async () => (await messageRow(second.messageId)).state === 'sent');
    const items = (await h.api('GET', `/api/patients/${patients[0]!.id}/timeline`, { token: ada.token })).json.items;
    expect(items.find((i: any) => i.id === first.messageId)).toMatchObject({ status: 'failed', errorCode: '21610', errorMessage: expect.stringContaining('opted out') });
    expect(receivedBodies(phone)).toEqual(['after opting back in']);
  });

  it('takes over the sends of a worker that died mid-send: looks each up, resends only what never arrived', async () => {
    const { patients, reply, messageRow } = await setup(2);
    const a = await reply(patients[0]!.id, 'reached Twilio before the crash');
    const b = await reply(patients[1]!.id, 'never left the dead worker');
    // A worker claims both, sends one, and dies: its session (and with it its liveness lock) is gone. Its send
    // window is zero here, so the takeover need not wait for a send timeout.
    const session = await h.database.db.openSession();
    const deadKey = await registerWorker(session);
    const dead = await claimSends(h.database.db, { workerKey: deadKey, limit: 10, leaseMs: 600_000, sendWindowMs: 0 });
    expect(dead).toHaveLength(2);
    // PGlite has one session that never closes: drop the lock by hand, as a dead process's session would.
    await session.query('SELECT pg_advisory_unlock($1, $2)', [WORKER_LOCK_SPACE, deadKey]);
    await session.release();
    const reachedTwilio = dead.find((d) => d.messageId === a.messageId)!;
    await h.adapters.get('sms')!.send({ channel: 'sms', to: reachedTwilio.address, body: reachedTwilio.body, media: [] }, { outboxId: reachedTwilio.outboxId, signal: AbortSignal.timeout(2000) });

    await h.startRelay();
    await eventually(async () => (await messageRow(a.messageId)).state === 'sent' && (await messageRow(b.messageId)).state === 'sent');
    expect(receivedBodies(patients[0]!.phone)).toEqual(['reached Twilio before the crash']);
    expect(receivedBodies(patients[1]!.phone)).toEqual(['never left the dead worker']);
    expect(await messageRow(a.messageId)).toMatchObject({ attempts: 1, provider_message_id: h.fake.received[0]!.sid });
  });
});
