import nodemailer from 'nodemailer';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createPostgresDb } from '../db/db.ts';
import { backends, isPostgresAvailable, postgresBackend, type TestDatabase } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { startTcpProxy } from '../test/tcp-proxy.ts';
import { startSmtpListener } from './smtp-listener.ts';

// Polling deadlines and test time limits sized for a loaded 2-core CI machine; nothing here asserts speed.
const SLOW_MACHINE_WAIT_MS = 45_000;
vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

/** A patient's mail client: nodemailer speaking SMTP to our listener. */
function mailClient(port: number) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, connectionTimeout: 5_000, socketTimeout: 5_000 });
}

describe.each(backends())('email over real SMTP on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend, { email: true });
  });
  afterEach(async () => {
    await h.close();
  });

  const messages = async () =>
    (await h.database.db.query<{ id: string; patient_id: string; direction: string; channel: string; address: string; body: string; status: string; error_code: string | null; provider_message_id: string | null }>(
      `SELECT id, patient_id, direction, channel, address, body, status, error_code, provider_message_id FROM messages ORDER BY seq`,
    )).rows;

  it('stores an inbound email once, stripped, and threads the reply under it', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const client = mailClient(h.smtpListener!.port);
    const mail = {
      from: '"Jane Doe" <Jane.Doe@Example.org>',
      to: 'care@switchboard.test',
      subject: 'Appointment',
      messageId: '<first-1@example.org>',
      references: ['<older-0@example.org>'],
      text: 'Can I move Thursday to Friday?\n\nJane\n-- \nJane Doe, sent from my phone\n\nOn Mon, Care Team <care@switchboard.test> wrote:\n> Your appointment is on Thursday.\n',
    };
    const info = await client.sendMail(mail);
    expect(info.response).toMatch(/^250/);
    // The sender's retry of the very same message is acknowledged again and stored once.
    expect((await client.sendMail(mail)).response).toMatch(/^250/);

    const stored = await messages();
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ direction: 'inbound', channel: 'email', address: 'jane.doe@example.org', body: 'Can I move Thursday to Friday?\n\nJane', provider_message_id: '<first-1@example.org>' });
    const patientId = stored[0]!.patient_id;
    const identities = await h.database.db.query(`SELECT channel, address FROM channel_identities WHERE patient_id = $1`, [patientId]);
    expect(identities.rows).toEqual([{ channel: 'email', address: 'jane.doe@example.org' }]);

    await h.startRelay();
    const reply = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Friday at 10 is booked.' } });
    expect(reply.status).toBe(201);
    expect(reply.json).toMatchObject({ channel: 'email', address: 'jane.doe@example.org' });
    const sent = await eventually(() => h.smtp!.received[0], { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'reply at the SMTP sink' });
    const outboxId = (await h.database.db.query<{ id: string }>(`SELECT id FROM outbox WHERE message_id = $1`, [reply.json.messageId])).rows[0]!.id;
    expect(sent).toMatchObject({
      rcptTo: ['jane.doe@example.org'],
      subject: 'Re: Appointment',
      inReplyTo: '<first-1@example.org>',
      references: ['<older-0@example.org>', '<first-1@example.org>'],
      messageId: `<outbox-${outboxId}@switchboard.test>`,
    });
    expect(sent.text.trim()).toBe('Friday at 10 is booked.');
    await eventually(async () => (await messages()).find((m) => m.id === reply.json.messageId)?.status === 'queued', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'reply recorded as sent' });

    // The patient answers the reply: same patient, threaded under our Message-ID.
    await client.sendMail({ from: 'jane.doe@example.org', to: 'care@switchboard.test', subject: 'Re: Appointment', messageId: '<second-2@example.org>', inReplyTo: sent.messageId, references: [...sent.references, sent.messageId!], text: 'Thanks!\n\nOn Tue, Care Team wrote:\n> Friday at 10 is booked.' });
    const after = await messages();
    expect(after.map((m) => [m.direction, m.body, m.patient_id])).toEqual([
      ['inbound', 'Can I move Thursday to Friday?\n\nJane', patientId],
      ['outbound', 'Friday at 10 is booked.', patientId],
      ['inbound', 'Thanks!', patientId],
    ]);
    const headers = await h.database.db.query(`SELECT in_reply_to FROM email_headers WHERE rfc_message_id = '<second-2@example.org>'`);
    expect(headers.rows).toEqual([{ in_reply_to: sent.messageId }]);
  });

  it('retries a reply the SMTP server refuses with 4xx, fails it on 5xx and moves on', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await mailClient(h.smtpListener!.port).sendMail({ from: 'pat@example.org', to: 'care@switchboard.test', subject: 'Hi', messageId: '<p1@example.org>', text: 'hello' });
    const patientId = (await messages())[0]!.patient_id;
    h.smtp!.enqueueFault({ kind: 'reply', code: 451, message: '4.3.0 try again later' });
    h.smtp!.enqueueFault({ kind: 'reply', code: 421, message: '4.7.0 too busy' });
    await h.startRelay();
    const first = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'first reply' } });
    await eventually(() => h.smtp!.received.length === 1, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'delivered after two temporary failures' });
    expect(h.smtp!.attempts).toBe(3);
    await eventually(async () => (await messages()).find((m) => m.id === first.json.messageId)?.status === 'queued', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'first recorded' });

    h.smtp!.enqueueFault({ kind: 'reply', code: 550, message: '5.1.1 mailbox unavailable' });
    const second = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'second reply' } });
    const third = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'third reply' } });
    await eventually(() => h.smtp!.received.length === 2, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'third delivered after the second failed' });
    const rows = await eventually(async () => {
      const all = await messages();
      return all.find((m) => m.id === third.json.messageId)?.status === 'queued' ? all : null;
    }, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'third recorded' });
    expect(rows.find((m) => m.id === second.json.messageId)).toMatchObject({ status: 'failed', error_code: 'smtp_550' });
    expect(h.smtp!.received.map((r) => r.text.trim())).toEqual(['first reply', 'third reply']);
  });

  it('holds a reply as uncertain when the connection drops after the server accepted; a resend the coordinator asks for keeps the Message-ID', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await mailClient(h.smtpListener!.port).sendMail({ from: 'pat@example.org', to: 'care@switchboard.test', subject: 'Hi', messageId: '<p2@example.org>', text: 'hello' });
    const patientId = (await messages())[0]!.patient_id;
    h.smtp!.enqueueFault({ kind: 'drop-after-accept' });
    await h.startRelay();
    const reply = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'maybe twice' } });
    await eventually(async () => (await messages()).find((m) => m.id === reply.json.messageId)?.status === 'uncertain', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'held as uncertain' });
    // SMTP cannot be asked what it accepted, so nothing was resent on the relay's own judgement.
    expect(h.smtp!.received).toHaveLength(1);
    const decided = await h.api('POST', `/api/patients/${patientId}/messages/${reply.json.messageId}/delivery`, { token: ada.token, body: { resolution: 'resend' } });
    expect(decided.status, decided.text).toBe(200);
    await eventually(async () => (await messages()).find((m) => m.id === reply.json.messageId)?.status === 'queued', { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'recorded after the resend' });
    expect(h.smtp!.received).toHaveLength(2);
    expect(new Set(h.smtp!.received.map((r) => r.messageId)).size).toBe(1);
  });

  it('refuses an oversized message with 552 and a sender-less one with 5xx, storing nothing', async () => {
    const small = await startSmtpListener({ db: h.database.db, logger: pino({ level: 'silent' }), host: '127.0.0.1', port: 0, maxBytes: 2_000 });
    try {
      const big = mailClient(small.port).sendMail({ from: 'pat@example.org', to: 'care@switchboard.test', subject: 'big', text: 'x'.repeat(10_000) });
      await expect(big).rejects.toMatchObject({ responseCode: 552 });
    } finally {
      await small.stop();
    }
    const anonymous = mailClient(h.smtpListener!.port).sendMail({ envelope: { from: '', to: ['care@switchboard.test'] }, raw: 'Subject: who\r\nMessage-ID: <anon@x>\r\n\r\nhi\r\n' });
    await expect(anonymous).rejects.toMatchObject({ responseCode: 550 });
    expect(await messages()).toEqual([]);
  });
});

describe.skipIf(!isPostgresAvailable())('inbound email while PostgreSQL is unreachable (PostgreSQL only)', () => {
  let database: TestDatabase;
  afterEach(async () => {
    await database?.drop();
  });

  it('answers 451 so the sender retries, then stores the retry once', async () => {
    database = await postgresBackend.create();
    const target = new URL(database.url!);
    const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    target.host = `127.0.0.1:${proxy.port}`;
    const db = createPostgresDb({ connectionString: target.toString(), poolSize: 2 });
    const listener = await startSmtpListener({ db, logger: pino({ level: 'silent' }), host: '127.0.0.1', port: 0 });
    try {
      const mail = { from: 'pat@example.org', to: 'care@switchboard.test', subject: 'Hi', messageId: '<down-1@example.org>', text: 'are you there?' };
      await proxy.cut();
      await expect(mailClient(listener.port).sendMail(mail)).rejects.toMatchObject({ responseCode: 451 });
      await proxy.restore();
      expect((await mailClient(listener.port).sendMail(mail)).response).toMatch(/^250/);
      expect((await mailClient(listener.port).sendMail(mail)).response).toMatch(/^250/);
      const stored = await database.db.query(`SELECT body FROM messages`);
      expect(stored.rows).toEqual([{ body: 'are you there?' }]);
    } finally {
      await listener.stop();
      await db.close();
      await proxy.close();
    }
  });
});
