import nodemailer from 'nodemailer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeSmtp, type FakeSmtp } from './fake-smtp.ts';

describe('fake SMTP sink', () => {
  let fake: FakeSmtp;
  beforeEach(async () => {
    fake = await startFakeSmtp({ user: 'relay', pass: 'secret' });
  });
  afterEach(async () => {
    await fake.close();
  });
  const client = (pass = 'secret') =>
    nodemailer.createTransport({ host: fake.host, port: fake.port, secure: false, ignoreTLS: true, auth: { user: 'relay', pass }, socketTimeout: 5_000 });
  const mail = { from: 'care@switchboard.test', to: 'pat@example.org', subject: 'Hi', text: 'hello', messageId: '<m1@switchboard.test>', inReplyTo: '<p1@example.org>', references: ['<p0@example.org>', '<p1@example.org>'] };

  it('keeps what crossed the wire, threading headers included', async () => {
    const info = await client().sendMail(mail);
    expect(info.response).toMatch(/^250/);
    expect(fake.received).toHaveLength(1);
    expect(fake.received[0]).toMatchObject({ mailFrom: 'care@switchboard.test', rcptTo: ['pat@example.org'], messageId: '<m1@switchboard.test>', inReplyTo: '<p1@example.org>', references: ['<p0@example.org>', '<p1@example.org>'], subject: 'Hi' });
  });

  it('refuses bad credentials with 535', async () => {
    await expect(client('wrong').sendMail(mail)).rejects.toMatchObject({ responseCode: 535, code: 'EAUTH' });
    expect(fake.received).toHaveLength(0);
  });

  it('applies one-shot faults in order: 4xx, 5xx, dropped before and after accepting, latency', async () => {
    fake.enqueueFault({ kind: 'reply', code: 451 });
    fake.enqueueFault({ kind: 'reply', code: 554 });
    fake.enqueueFault({ kind: 'drop-before-accept' });
    fake.enqueueFault({ kind: 'drop-after-accept' });
    fake.enqueueFault({ kind: 'latency', ms: 50 });
    await expect(client().sendMail(mail)).rejects.toMatchObject({ responseCode: 451 });
    await expect(client().sendMail(mail)).rejects.toMatchObject({ responseCode: 554 });
    await expect(client().sendMail(mail)).rejects.toBeDefined();
    expect(fake.received).toHaveLength(0);
    await expect(client().sendMail(mail)).rejects.toBeDefined();
    expect(fake.received).toHaveLength(1);
    expect((await client().sendMail(mail)).response).toMatch(/^250/);
    expect(fake.received).toHaveLength(2);
    expect(fake.attempts).toBe(5);
  });
});
