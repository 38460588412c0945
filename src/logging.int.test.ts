// The real server process (src/main.ts, demo mode) under the two failures its logger must survive:
//  - patient data reaching a log: a planted phone number, message body, search word and Meta verify token go
//    through webhooks, search and a reply at the most verbose level, then the whole stdout+stderr is searched;
//  - a stdout that breaks (reader closed) or stops draining (reader alive, never reading): the process keeps
//    serving, does not spin, counts what it dropped on /metrics, and SIGTERM still ends it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { DEMO_LOGINS, DEMO_META_VERIFY_TOKEN, DEMO_TWILIO } from './demo.ts';
import { signTwilioRequest } from './test/fake-twilio.ts';
import { backends } from './test/databases.ts';
import { eventually, freePort } from './test/harness.ts';
import { loggerOptions } from './logging.ts';

// Booting demo mode (PGlite, migrations, seeding) takes tens of seconds on a loaded 2-core machine; nothing here
// asserts speed.
const BOOT_WAIT_MS = 150_000;
vi.setConfig({ testTimeout: 300_000 });

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const METRICS_TOKEN = 'metrics-token-for-the-log-test';
const SHUTDOWN_TIMEOUT_MS = 5_000;

interface Server {
  child: ChildProcessWithoutNullStreams;
  baseUrl: string;
  /** Everything the process wrote to stdout and stderr, as long as we read it. */
  output(): string;
  exited(): boolean;
}

const children: ChildProcessWithoutNullStreams[] = [];
const dataDirs: string[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dataDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-logging-'));
  dataDirs.push(dataDir);
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: String(port), SMTP_LISTEN_PORT: '0', METRICS_TOKEN, SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), ...env },
  });
  children.push(child);
  let output = '';
  const collect = (chunk: Buffer) => (output += chunk.toString());
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  // The banner ends with the demo logins, printed once the demo data is seeded.
  await eventually(() => output.includes('Demo logins') || child.exitCode !== null, { what: 'the demo server up', timeoutMs: BOOT_WAIT_MS });
  expect(child.exitCode, output).toBeNull();
  return { child, baseUrl: `http://127.0.0.1:${port}`, output: () => output, exited: () => child.exitCode !== null || child.signalCode !== null };
}

async function json(baseUrl: string, method: string, url: string, options: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(baseUrl + url, {
    method,
    headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...(options.body ? { 'content-type': 'application/json' } : {}) },
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** CPU seconds (user + system) the process has used, from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function droppedLines(baseUrl: string): Promise<number> {
  const response = await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(response.status).toBe(200);
  const line = (await response.text()).split('\n').find((l) => l.startsWith('switchboard_log_lines_dropped_total '));
  expect(line, 'switchboard_log_lines_dropped_total on /metrics').toBeDefined();
  return Number(line!.split(' ')[1]);
}

async function stopWithSigterm(server: Server): Promise<void> {
  server.child.kill('SIGTERM');
  // Generous: this detects a process that never exits (it used to hang for hours), it does not time a stop.
  await eventually(() => server.exited(), { what: 'the process to exit after SIGTERM', timeoutMs: SHUTDOWN_TIMEOUT_MS + 25_000 });
}

describe('the server process', () => {
  it('logs requests, webhooks, search and replies at trace level without a phone number, body, search word or token', async () => {
    const server = await startServer({ LOG_LEVEL: 'trace' });
    const phone = '+15558675309';
    const searchWord = 'quetrivane';
    const body = `My ${searchWord} refill makes me dizzy at night`;

    const webhookUrl = `${server.baseUrl}/webhooks/twilio/sms`;
    const form = { MessageSid: 'SM' + 'a1'.repeat(16), AccountSid: DEMO_TWILIO.accountSid, From: phone, To: DEMO_TWILIO.fromNumber, Body: body, NumMedia: '0' };
    const inbound = await fetch(webhookUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signTwilioRequest(DEMO_TWILIO.authToken, webhookUrl, form) },
      body: new URLSearchParams(form).toString(),
    });
    expect(inbound.status).toBe(200);

    const verified = await fetch(`${server.baseUrl}/webhooks/messenger?hub.mode=subscribe&hub.verify_token=${DEMO_META_VERIFY_TOKEN}&hub.challenge=4242`);
    expect(await verified.text()).toBe('4242');

    const ada = DEMO_LOGINS[0]!;
    const login = await json(server.baseUrl, 'POST', '/api/auth/login', { body: { email: ada.email, password: ada.password } });
    expect(login.status).toBe(200);
    const token: string = login.body.token;
    // Demo routing may give the new patient to anyone; the admin sees every patient.
    const admin = DEMO_LOGINS.find((l) => l.role === 'admin')!;
    const adminToken: string = (await json(server.baseUrl, 'POST', '/api/auth/login', { body: { email: admin.email, password: admin.password } })).body.token;
    const search = await json(server.baseUrl, 'GET', `/api/search?q=${searchWord}`, { token: adminToken });
    expect(search.status).toBe(200);
    const patientId: string = search.body.hits[0].patientId;
    expect((await json(server.baseUrl, 'GET', `/api/search?q=${searchWord}`, { token })).status).toBe(200);
    const reply = await json(server.baseUrl, 'POST', `/api/patients/${patientId}/messages`, { token: adminToken, body: { body: `About ${searchWord}: take it with food.` } });
    expect(reply.status).toBe(201);

    await stopWithSigterm(server);
    const output = server.output();
    // The logs were written, and they describe these requests.
    expect(output).toContain('"path":"/api/search"');
    expect(output).toContain('"path":"/webhooks/twilio/sms"');
    for (const secret of [phone, phone.slice(1), phone.slice(2), body, searchWord, DEMO_META_VERIFY_TOKEN]) {
      expect(output.toLowerCase(), `the log carries ${secret}`).not.toContain(secret.toLowerCase());
    }
  });

  it('keeps serving without spinning when the reader of its stdout goes away, counts the lines it drops, and stops on SIGTERM', async () => {
    const server = await startServer({ LOG_LEVEL: 'info' });
    server.child.stdout.destroy();
    // Every request logs two lines; keep asking until the broken pipe has cost some of them.
    await eventually(async () => (await fetch(`${server.baseUrl}/api/health`)).ok && (await droppedLines(server.baseUrl)) > 0, { what: 'dropped log lines counted on /metrics' });

    // A spin detector with a huge margin, not a speed test: an idle server uses next to no CPU.
    const before = cpuSeconds(server.child.pid!);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(cpuSeconds(server.child.pid!) - before).toBeLessThan(1);

    expect((await fetch(`${server.baseUrl}/api/health`)).status).toBe(200);
    await stopWithSigterm(server);
    expect(server.child.exitCode).toBe(0);
  });

  it('stops on SIGTERM when the reader of its stdout is alive but no longer reads', async () => {
    const server = await startServer({ LOG_LEVEL: 'info' });
    server.child.stdout.removeAllListeners('data');
    server.child.stdout.pause();
    // More log lines than the pipe and our paused stream's buffer hold together (about 128 KiB), so stdout is full.
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(Array.from({ length: 50 }, () => fetch(`${server.baseUrl}/api/health`).then((r) => r.text())));
    }
    expect((await fetch(`${server.baseUrl}/api/health`)).status).toBe(200);
    await stopWithSigterm(server);
  });
});

describe.each(backends())('database errors in the log ($name)', (backend) => {
  it('keep type, message, code and stack, never the parameters or the row the driver quotes', async () => {
    const database = await backend.create();
    try {
      const phone = '+15558675309';
      await database.db.query(`CREATE TABLE log_probe (phone text PRIMARY KEY)`);
      await database.db.query(`INSERT INTO log_probe VALUES ($1)`, [phone]);
      const duplicate = await database.db.query(`INSERT INTO log_probe VALUES ($1)`, [phone]).catch((error: unknown) => error);
      const badCast = await database.db.query(`SELECT $1::int`, [phone]).catch((error: unknown) => error);
      const lines: string[] = [];
      const logger = pino(loggerOptions('trace'), { write: (line: string) => void lines.push(line) });
      logger.error({ err: duplicate }, 'storing failed');
      logger.error({ err: new Error('wrapped', { cause: badCast }) }, 'reading failed');
      const output = lines.join('');
      expect(output).toContain('"code":"23505"');
      expect(output).toContain('"code":"22003"'); // out of range for integer, in the cause
      expect(output).toContain('[number]');
      expect(output).not.toContain(phone.slice(2));
      expect(output).not.toMatch(/"(params|detail|query)"/);
    } finally {
      await database.drop();
    }
  });
});
