import { describe, expect, it } from 'vitest';
import { classifySmtpError, extractReplyText, outboundMessageId, parseInboundEmail, replySubject } from './email.ts';

const mime = (headers: string[], body: string, contentType = 'text/plain; charset=utf-8') =>
  Buffer.from([...headers, `Content-Type: ${contentType}`, '', body].join('\r\n'));

describe('extractReplyText', () => {
  it('drops an "On … wrote:" quote and a "-- " signature', () => {
    const text = 'Yes, Thursday works.\n\nThanks,\nJane\n-- \nJane Doe\n555-0100\n\nOn Tue, Nov 24, 2026 at 10:00 AM Care Team <care@x.test> wrote:\n> Can you come Thursday?\n> Care team\n';
    expect(extractReplyText(text)).toBe('Yes, Thursday works.\n\nThanks,\nJane');
  });

  it('drops an Outlook "Original Message" block and a mobile signature', () => {
    expect(extractReplyText('Sounds good\r\n\r\n-----Original Message-----\r\nFrom: Care\r\nSent: today\r\n\r\nold text')).toBe('Sounds good');
    expect(extractReplyText('See you then\n\nSent from my iPhone')).toBe('See you then');
  });

  it('keeps a message with no quote whole, including lines that only look like markup', () => {
    expect(extractReplyText('Line one\n<b>not html</b>\nLine three')).toBe('Line one\n<b>not html</b>\nLine three');
  });
});

describe('replySubject', () => {
  it('adds one Re: and keeps an existing one', () => {
    expect(replySubject('Appointment', 'x')).toBe('Re: Appointment');
    expect(replySubject('RE: Appointment', 'x')).toBe('RE: Appointment');
    expect(replySubject(null, 'A message from your care team')).toBe('A message from your care team');
    expect(replySubject('   ', 'fallback')).toBe('fallback');
  });
});

describe('classifySmtpError', () => {
  it('maps 4xx to retryable, 5xx to permanent, bad credentials to wait-for-operator', () => {
    expect(classifySmtpError({ responseCode: 451, code: 'EMESSAGE', command: 'DATA', message: '451 try later' }).details).toMatchObject({ retryable: true, outcome: 'not-sent', code: 'smtp_451' });
    expect(classifySmtpError({ responseCode: 421, code: 'EENVELOPE', command: 'RCPT TO', message: '421' }).details).toMatchObject({ retryable: true, code: 'smtp_421' });
    expect(classifySmtpError({ responseCode: 550, code: 'EENVELOPE', command: 'RCPT TO', message: '550 no such user' }).details).toMatchObject({ retryable: false, code: 'smtp_550' });
    expect(classifySmtpError({ responseCode: 554, code: 'EMESSAGE', command: 'DATA', message: '554' }).details).toMatchObject({ retryable: false });
    expect(classifySmtpError({ responseCode: 535, code: 'EAUTH', command: 'AUTH PLAIN', message: 'bad auth' }).details).toMatchObject({ retryable: true, outcome: 'not-sent' });
  });

  it('tells a connection that never opened from one lost mid-message', () => {
    expect(classifySmtpError({ code: 'ECONNECTION', command: 'CONN', message: 'connect ECONNREFUSED' }).details).toMatchObject({ retryable: true, outcome: 'not-sent' });
    expect(classifySmtpError({ code: 'ETIMEDOUT', message: 'timeout' }).details).toMatchObject({ retryable: true, outcome: 'unknown' });
    expect(classifySmtpError({ code: 'ESOCKET', message: 'socket closed' }).details).toMatchObject({ retryable: true, outcome: 'unknown' });
    // What nodemailer really reports: a refused connection, and a close after DATA (tagged CONN all the same).
    expect(classifySmtpError({ code: 'ESOCKET', command: 'CONN', message: 'connect ECONNREFUSED 127.0.0.1:1' }).details).toMatchObject({ retryable: true, outcome: 'not-sent' });
    expect(classifySmtpError({ code: 'ECONNECTION', command: 'CONN', message: 'Connection closed unexpectedly' }).details).toMatchObject({ retryable: true, outcome: 'unknown' });
  });
});

describe('parseInboundEmail', () => {
  it('takes the lower-cased From as identity, Message-ID as dedupe key, threading headers, and the stripped text', async () => {
    const raw = mime(
      ['From: "Jane Doe" <Jane.Doe@Example.ORG>', 'To: care@switchboard.test', 'Subject: Re: Appointment', 'Message-ID: <m2@example.org>', 'In-Reply-To: <outbox-1@switchboard.test>', 'References: <m1@example.org> <outbox-1@switchboard.test>'],
      'Thursday is fine.\r\n\r\nOn Mon, Care Team wrote:\r\n> Does Thursday work?\r\n',
    );
    const parsed = await parseInboundEmail(raw, { mailFrom: 'bounce@example.org', rcptTo: ['Care@Switchboard.test'] });
    expect(parsed.message).toMatchObject({ channel: 'email', provider: 'smtp', providerMessageId: '<m2@example.org>', from: 'jane.doe@example.org', to: 'care@switchboard.test', body: 'Thursday is fine.' });
    expect(parsed.headers).toEqual({ rfcMessageId: '<m2@example.org>', inReplyTo: '<outbox-1@switchboard.test>', references: ['<m1@example.org>', '<outbox-1@switchboard.test>'], subject: 'Re: Appointment' });
  });

  it('reads HTML-only mail as text and strips its quote', async () => {
    const raw = mime(['From: pat@example.org', 'Message-ID: <h1@example.org>', 'Subject: hi'], '<p>New <b>answer</b></p><blockquote>older message</blockquote>', 'text/html; charset=utf-8');
    const parsed = await parseInboundEmail(raw, { rcptTo: ['care@switchboard.test'] });
    expect(parsed.message.body).toBe('New answer');
  });

  it('dedupes a message without Message-ID by its bytes', async () => {
    const raw = mime(['From: pat@example.org', 'Subject: no id'], 'hello');
    const a = await parseInboundEmail(raw, { rcptTo: [] });
    const b = await parseInboundEmail(Buffer.from(raw), { rcptTo: [] });
    const c = await parseInboundEmail(mime(['From: pat@example.org', 'Subject: no id'], 'hello!'), { rcptTo: [] });
    expect(a.message.providerMessageId).toMatch(/^<sha256-[0-9a-f]{64}@switchboard\.invalid>$/);
    expect(b.message.providerMessageId).toBe(a.message.providerMessageId);
    expect(c.message.providerMessageId).not.toBe(a.message.providerMessageId);
  });

  it('keeps the subject when nothing but a quote is left', async () => {
    const raw = mime(['From: pat@example.org', 'Message-ID: <q@example.org>', 'Subject: Fwd: lab results'], '> only a quote\r\n> more');
    expect((await parseInboundEmail(raw, { rcptTo: [] })).message.body).toBe('Fwd: lab results');
  });

  it('refuses a message with no sender address', async () => {
    await expect(parseInboundEmail(mime(['Subject: anonymous'], 'hi'), { rcptTo: [] })).rejects.toMatchObject({ status: 400 });
  });
});

it('derives one Message-ID per outbox row from the From domain', () => {
  expect(outboundMessageId('0b7c', 'Care Team <care@Clinic.example>')).toBe('<outbox-0b7c@clinic.example>');
  expect(outboundMessageId('0b7c', 'care@clinic.example')).toBe('<outbox-0b7c@clinic.example>');
});
