import { afterEach, describe, expect, it, vi } from 'vitest';
import { claimSends, registerWorker, WORKER_LOCK_SPACE } from '../db/outbox.ts';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

/**
 * Requirement 8 where the provider cannot be asked: a Meta send whose connection dropped after Meta accepted it is
 * neither looked up (no API) nor resent (it might reach the patient twice). It waits as `uncertain`, holding back
 * the patient's later replies, until a coordinator decides: it arrived, resend, or cancel.
 */
// Sized for a loaded 2-core CI machine, where starting a harness alone can take half a minute; nothing here asserts speed.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });
const SLOW_MACHINE_WAIT_MS = 45_000;

describe.each(backends())('uncertain deliveries over real HTTP on $name', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  async function setup() {
    h = await startHarness(backend, { meta: {} });
    // Ada alone when the patient writes in, so the patient is assigned to her; Grace, created later, is on no team
    // of hers and may not see them.
    const ada = await h.createCoordinator({ name: 'Ada' });
    const reply = async (patientId: string, body: string) => {
      const response = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body } });
      expect(response.status, response.text).toBe(201);
      return (response.json as { messageId: string }).messageId;
    };
    const row = async (messageId: string) =>
      (await h.database.db.query<{ status: string; error_code: string | null; provider_message_id: string | null; state: string; needs_lookup: boolean }>(
        `SELECT m.status, m.error_code, m.provider_message_id, o.state, o.needs_lookup FROM messages m JOIN outbox o ON o.message_id = m.id WHERE m.id = $1`,
        [messageId],
      )).rows[0]!;
    const decide = (patientId: string, messageId: string, resolution: string, token = ada.token) =>
      h.api('POST', `/api/patients/${patientId}/messages/${messageId}/delivery`, { token, body: { resolution } });
    const patientOf = async () => (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId as string;
    return { ada, reply, row, decide, patientOf };
  }

  /** What the fake Meta accepted with this text, as it crossed the wire. */
  const copiesOf = (text: string) => h.meta!.received.filter((m) => (m.api === 'messenger' ? m.json.message?.text : m.json.text?.body) === text);

  it('Messenger: a send dropped after Meta accepted waits as uncertain, blocks the next reply, and "it arrived" lets the next go once', async () => {
    const { ada, reply, row, decide, patientOf } = await setup();
    expect((await h.meta!.sendMessengerText({ webhookUrl: `${h.baseUrl}/webhooks/messenger`, psid: '24816030402948', text: 'Is my refill ready?' })).status).toBe(200);
    const patientId = await patientOf();
    const grace = await h.createCoordinator({ name: 'Grace' });

    h.meta!.injectFault({ kind: 'drop-after-accept' });
    const relay = await h.startRelay();
    const first = await reply(patientId, 'Your refill is ready');
    const second = await reply(patientId, 'Pick it up after 3 pm');
    await eventually(async () => (await row(first)).state === 'uncertain', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'the dropped send held as uncertain' });
    expect(await row(first)).toMatchObject({ status: 'uncertain', provider_message_id: null, needs_lookup: true });
    const timeline = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items;
    expect(timeline.find((i: any) => i.id === first)).toMatchObject({ status: 'uncertain' });

    // Nothing is resent and nothing overtakes it: with the relay stopped, a fresh claim finds no sendable row.
    await relay.stop();
    const session = await h.database.db.openSession();
    const key = await registerWorker(session);
    expect(await claimSends(h.database.db, { workerKey: key, limit: 10, leaseMs: 60_000, sendWindowMs: 0 })).toEqual([]);
    await session.query('SELECT pg_advisory_unlock($1, $2)', [WORKER_LOCK_SPACE, key]);
    await session.release();
    expect(copiesOf('Your refill is ready')).toHaveLength(1);
    expect(copiesOf('Pick it up after 3 pm')).toHaveLength(0);
    expect(await row(second)).toMatchObject({ state: 'pending' });
    await h.startRelay();

    // Who may decide: not a coordinator who may not see the patient (404, as for a patient that does not exist);
    // only a message that is waiting for a decision (409); only the three answers (400).
    expect((await decide(patientId, first, 'delivered', grace.token)).status).toBe(404);
    expect((await decide(patientId, second, 'delivered')).status).toBe(409);
    expect((await decide(patientId, first, 'maybe')).status).toBe(400);
    expect((await decide(patientId, '00000000-0000-4000-8000-000000000000', 'delivered')).status).toBe(404);
    expect(await row(first)).toMatchObject({ state: 'uncertain' });

    const decided = await decide(patientId, first, 'delivered');
    expect(decided.status, decided.text).toBe(200);
    expect(decided.json).toMatchObject({ messageId: first, resolution: 'delivered', status: 'sent' });
    expect(await row(first)).toMatchObject({ state: 'sent', status: 'sent', provider_message_id: null });
    await eventually(async () => (await row(second)).state === 'sent', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'the next reply sent after the decision' });
    expect(copiesOf('Your refill is ready')).toHaveLength(1);
    expect(copiesOf('Pick it up after 3 pm')).toHaveLength(1);
    expect((await decide(patientId, first, 'resend')).status).toBe(409);

    const audit = await h.database.db.query<{ actor_id: string; detail: unknown }>(`SELECT actor_id, detail FROM audit_log WHERE action = 'message.delivery_resolve'`);
    expect(audit.rows).toEqual([{ actor_id: ada.id, detail: { messageId: first, resolution: 'delivered' } }]);
  });

  it('WhatsApp: "resend" sends exactly one more copy; "cancel" fails the message and frees the queue', async () => {
    const { reply, row, decide, patientOf } = await setup();
    expect((await h.meta!.sendWhatsAppText({ webhookUrl: `${h.baseUrl}/webhooks/whatsapp`, from: '15551234567', text: 'Hello?' })).status).toBe(200);
    const patientId = await patientOf();
    await h.startRelay();

    h.meta!.injectFault({ kind: 'drop-after-accept' });
    const resent = await reply(patientId, 'Your lab results are in');
    await eventually(async () => (await row(resent)).state === 'uncertain', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'first send uncertain' });
    expect(copiesOf('Your lab results are in')).toHaveLength(1);
    expect((await decide(patientId, resent, 'resend')).json).toMatchObject({ status: 'pending' });
    const sent = await eventually(async () => {
      const current = await row(resent);
      return current.state === 'sent' ? current : null;
    }, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'the resend recorded' });
    const copies = copiesOf('Your lab results are in');
    expect(copies).toHaveLength(2);
    expect(sent).toMatchObject({ status: 'queued', provider_message_id: copies[1]!.id });

    h.meta!.injectFault({ kind: 'drop-after-accept' });
    const cancelled = await reply(patientId, 'Please call us back');
    const after = await reply(patientId, 'We are open until 6 pm');
    await eventually(async () => (await row(cancelled)).state === 'uncertain', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'second send uncertain' });
    expect((await decide(patientId, cancelled, 'cancel')).json).toMatchObject({ status: 'failed' });
    expect(await row(cancelled)).toMatchObject({ state: 'failed', status: 'failed', error_code: 'cancelled' });
    await eventually(async () => (await row(after)).state === 'sent', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'the reply behind the cancelled one' });
    expect(copiesOf('Please call us back')).toHaveLength(1);
    expect(copiesOf('We are open until 6 pm')).toHaveLength(1);
    expect(copiesOf('Your lab results are in')).toHaveLength(2);
  });
});
