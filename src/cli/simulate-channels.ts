import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import nodemailer from 'nodemailer';
import { DEMO_LOGINS } from '../demo.ts';

export const CHANNEL_USAGE = `       npm run simulate -- email --from pat@example.org [--subject "…"] [--in-reply-to "<id@host>"] "message text"
       npm run simulate -- webchat --patient <patient id> ["message text"]

email sends a real SMTP message to the running demo's inbound listener; webchat makes a chat link for the
patient (as the demo admin) (and, given text, posts it as the patient).`;

interface DemoFile {
  smtpListen?: { host: string; port: number };
  publicBaseUrl?: string;
}

async function readDemo(): Promise<{ dataDir: string; demo: DemoFile } | null> {
  const dataDir = resolve(process.env.DATA_DIR ?? './data');
  try {
    return { dataDir, demo: JSON.parse(await readFile(join(dataDir, 'demo.json'), 'utf8')) as DemoFile };
  } catch {
    process.stderr.write(`no running demo found (${join(dataDir, 'demo.json')} is missing); start one with npm start\n`);
    return null;
  }
}

export async function simulateEmail(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { from: { type: 'string' }, subject: { type: 'string' }, 'in-reply-to': { type: 'string' } }, allowPositionals: true, strict: true });
  const text = positionals.join(' ');
  if (!values.from || !text) {
    process.stderr.write(`usage:\n${CHANNEL_USAGE}\n`);
    return 2;
  }
  const found = await readDemo();
  if (!found) return 1;
  const listen = found.demo.smtpListen;
  if (!listen) {
    process.stderr.write('the running demo has no SMTP listener (SMTP_LISTEN_PORT=off?)\n');
    return 1;
  }
  const transport = nodemailer.createTransport({ host: listen.host, port: listen.port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({
      from: values.from,
      to: 'care@demo.switchboard.test',
      subject: values.subject ?? 'Message from a patient',
      text,
      ...(values['in-reply-to'] ? { inReplyTo: values['in-reply-to'], references: [values['in-reply-to']] } : {}),
    });
    process.stdout.write(`${info.response} (Message-ID ${info.messageId})\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`the SMTP listener at ${listen.host}:${listen.port} refused the message: ${String(error)}\n`);
    return 1;
  }
}

export async function simulateWebchat(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { patient: { type: 'string' }, 'ttl-hours': { type: 'string' } }, allowPositionals: true, strict: true });
  if (!values.patient || !/^[0-9a-f-]{36}$/i.test(values.patient)) {
    process.stderr.write(`usage:\n${CHANNEL_USAGE}\n`);
    return 2;
  }
  const found = await readDemo();
  if (!found) return 1;
  const baseUrl = process.env.PUBLIC_BASE_URL ?? found.demo.publicBaseUrl ?? 'http://127.0.0.1:3000';
  const ttlHours = Number(values['ttl-hours'] ?? 24);
  // Links are stored by the server, so one is made the way a coordinator makes one: as the demo admin, over the API.
  const admin = DEMO_LOGINS.find((login) => login.role === 'admin')!;
  const call = (path: string, init: RequestInit) => fetch(`${baseUrl}${path}`, init).catch(() => null);
  const login = await call('/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: admin.email, password: admin.password }) });
  if (!login?.ok) {
    process.stderr.write(login ? `demo admin sign-in refused: ${login.status} ${await login.text()}\n` : `${baseUrl} did not answer; is npm start running?\n`);
    return 1;
  }
  const { token: apiToken } = (await login.json()) as { token: string };
  const made = await call(`/api/patients/${values.patient.toLowerCase()}/webchat-link`, { method: 'POST', headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ ttlHours }) });
  if (!made?.ok) {
    process.stderr.write(`could not make a link: ${made?.status} ${await made?.text()}\n`);
    return 1;
  }
  const { url } = (await made.json()) as { url: string };
  const token = url.slice(url.indexOf('#') + 1);
  process.stdout.write(`${url}\n`);
  const text = positionals.join(' ');
  if (!text) return 0;
  const response = await fetch(`${baseUrl}/chat/api/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ clientMessageId: randomUUID(), body: text }),
  }).catch(() => null);
  if (!response) {
    process.stderr.write(`${baseUrl} did not answer; is npm start running?\n`);
    return 1;
  }
  process.stdout.write(`${response.status} ${await response.text()}\n`);
  return response.ok ? 0 : 1;
}
