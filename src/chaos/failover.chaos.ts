import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type Db } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { hashPassword } from '../security/passwords.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { eventually, freePort, TEST_TWILIO } from '../test/harness.ts';
import { canRunPostgresInstances } from '../test/postgres-instances.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'deploy/ha/pg-auto-failover.sh');
const PATIENTS = 8;
const INBOUND = 150;
const REPLIES = 60;
const KILL_AFTER_INBOUND = 40;

const hasPgAutoFailover = async () => (await run('bash', ['-c', 'command -v pg_autoctl']).then(() => true, () => false)) && canRunPostgresInstances();

/**
 * A pg_auto_failover formation (deploy/ha/pg-auto-failover.sh), a web and a worker process on its multi-host URI,
 * signed inbound SMS and API replies flowing, and the primary killed mid-load. Twilio's side is played by the
 * test: a webhook not answered 2xx is sent again with the same MessageSid, as Twilio does.
 */
describe.skipIf(!(await hasPgAutoFailover()))('failover: the primary dies under load, pg_auto_failover promotes the secondary', () => {
  let dir: string;
  let uri: string;
  let db: Db;
  let fake: FakeTwilio;
  const processes = new Map<string, ChildProcess>();
  const logs: string[] = [];
  const exits: string[] = [];

  const script = (...args: string[]) => run('bash', [SCRIPT, ...args], { timeout: 300_000, maxBuffer: 1 << 20 });

  function startRole(role: 'web' | 'worker', port: number): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', role], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
        DATABASE_URL: uri,
        DATABASE_POOL_SIZE: '4',
        DATA_DIR: join(dir, `data-${role}`),
        MEDIA_DIR: join(dir, `media-${role}`),
        TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
        TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
        TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
        TWILIO_API_BASE: fake.url,
        SMTP_LISTEN_PORT: 'off',
        OUTBOX_POLL_MS: '200',
        LOG_LEVEL: 'warn',
      },
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) if (line.trim()) logs.push(`[${role}] ${line}`);
      });
    }
    child.on('exit', (code, signal) => exits.push(`${role} exited (code ${code}, signal ${signal})`));
    processes.set(role, child);
    return child;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-failover-'));
    // The formation runs as the postgres OS user, who must be able to reach its directory inside this one.
    await chmod(dir, 0o755);
    uri = (await script('start', join(dir, 'formation'))).stdout.trim();
    db = createPostgresDb({ connectionString: uri, poolSize: 2 });
    await migrate(db);
    fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
  });

  afterAll(async () => {
    // What our processes logged (warn and above) is the evidence when they do not ride out the failover.
    if (logs.length > 0) console.log(`process log (${logs.length} lines, first 80):\n${logs.slice(0, 80).join('\n')}`);
    for (const child of processes.values()) child.kill('SIGKILL');
    await db?.close();
    await fake?.close();
    if (dir) {
      await script('destroy', join(dir, 'formation')).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('acknowledged inbound messages are stored once, replies reach the provider once, our processes reconnect by themselves', async () => {
    const webPort = await freePort();
    const webUrl = `http://127.0.0.1:${webPort}`;
    const web = startRole('web', webPort);
    const worker = startRole('worker', await freePort());
    await eventually(async () => (await fetch(`${webUrl}/api/health`).catch(() => null))?.ok, { timeoutMs: 180_000, what: 'the web process up' });

    const password = 'failover-password-0123';
    await insertCoordinator(db, { email: 'failover@test.switchboard', name: 'Failover', role: 'coordinator', passwordHash: await hashPassword(password) });
    const login = await fetch(`${webUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'failover@test.switchboard', password }) });
    const loginText = await login.text();
    expect(login.status, loginText).toBe(200);
    const { token } = JSON.parse(loginText) as { token: string };

    const unavailable: string[] = [];
    /** Sends until answered 2xx, as Twilio redelivers a webhook and a coordinator's browser resends; every retry is counted. */
    async function untilAcknowledged(what: string, attempt: () => Promise<number>): Promise<void> {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const status = await attempt().catch((error: Error) => `${error.message}`);
        if (typeof status === 'number' && status >= 200 && status < 300) return;
        if (typeof status === 'number' && status < 500) throw new Error(`${what}: answered ${status}, a client error that retrying cannot fix`);
        unavailable.push(`${what}: ${status}`);
        // Nobody restarts our processes here: one that died will not answer again, so say so now.
        if (exits.length > 0) throw new Error(`${what}: not acknowledged and ${exits.join(', ')}; see the process log above`);
        if (Date.now() > deadline) throw new Error(`${what}: not acknowledged within 120 s (last: ${status})`);
        // A client's back-off between retries, not a synchronisation.
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }

    const phones = Array.from({ length: PATIENTS }, (_, i) => `+1555700${String(i).padStart(4, '0')}`);
    const acknowledgedSids: string[] = [];
    const sendInbound = (i: number) => {
      const messageSid = `SMfailover${String(i).padStart(4, '0')}`;
      return untilAcknowledged(`inbound ${messageSid}`, async () => {
        const answer = await fake.sendInboundSms({ webhookUrl: `${webUrl}/webhooks/twilio/sms`, from: phones[i % PATIENTS]!, to: TEST_TWILIO.fromNumber, body: `inbound ${i}`, messageSid });
        return answer.status;
      }).then(() => {
        acknowledgedSids.push(messageSid);
      });
    };

    // One message per patient first, so the replies have patients to go to.
    for (let i = 0; i < PATIENTS; i++) await sendInbound(i);
    const patientIds = (
      await db.query<{ patient_id: string }>(`SELECT patient_id FROM messages WHERE provider_message_id = ANY($1) ORDER BY provider_message_id`, [acknowledgedSids])
    ).rows.map((row) => row.patient_id);
    expect(patientIds).toHaveLength(PATIENTS);

    const inboundLane = async (lane: number, lanes: number) => {
      for (let i = PATIENTS + lane; i < INBOUND; i += lanes) await sendInbound(i);
    };
    const replyLane = async () => {
      for (let i = 0; i < REPLIES; i++) {
        await untilAcknowledged(`reply ${i}`, async () => {
          const response = await fetch(`${webUrl}/api/patients/${patientIds[i % PATIENTS]}/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            // The key makes a resend after an unanswered (but perhaps committed) request one message, not two.
            body: JSON.stringify({ body: `reply ${i}`, idempotencyKey: `failover-reply-${i}` }),
          });
          await response.arrayBuffer();
          return response.status;
        });
      }
    };
    let killedAt = 0;
    const chaos = async () => {
      await eventually(() => acknowledgedSids.length >= KILL_AFTER_INBOUND, { timeoutMs: 120_000, what: `${KILL_AFTER_INBOUND} inbound acknowledged` });
      // Keeper and PostgreSQL both, at once: a kill -9 of the postmaster alone is restarted by its keeper.
      await script('ctl', join(dir, 'formation'), 'stop', '--immediate', '--pgdata', join(dir, 'formation', 'node1'));
      killedAt = acknowledgedSids.length;
    };

    await Promise.all([inboundLane(0, 2), inboundLane(1, 2), replyLane(), chaos()]);
    expect(killedAt).toBeGreaterThan(0);
    expect(killedAt).toBeLessThan(INBOUND);

    // The monitor promoted node2 (wait_primary: a primary whose standby is gone, writes go on without sync).
    const state = await eventually(
      async () => {
        const { stdout } = await script('state', join(dir, 'formation'));
        return /^node2 .*\|\s*(wait_primary|primary)\s*\|\s*(wait_primary|primary)\s*$/m.test(stdout) && stdout;
      },
      { timeoutMs: 60_000, what: 'node2 promoted' },
    );
    expect(state).toMatch(/node2/);

    // Every acknowledged MessageSid is stored exactly once.
    expect(acknowledgedSids).toHaveLength(INBOUND);
    const stored = await db.query<{ sid: string; n: number }>(
      `SELECT provider_message_id AS sid, count(*)::int AS n FROM messages WHERE direction = 'inbound' AND provider_message_id LIKE 'SMfailover%' GROUP BY 1`,
    );
    expect(stored.rows.filter((row) => row.n !== 1)).toEqual([]);
    expect(new Set(stored.rows.map((row) => row.sid))).toEqual(new Set(acknowledgedSids));

    // Every reply reaches the provider exactly once, through the worker that lived through the failover.
    await eventually(async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE state <> 'sent'`)).rows[0]?.n === 0, {
      timeoutMs: 120_000,
      what: 'every reply sent',
    });
    const bodies = fake.received.map((message) => message.body).filter((body) => body.startsWith('reply '));
    const counts = new Map<string, number>();
    for (const body of bodies) counts.set(body, (counts.get(body) ?? 0) + 1);
    expect([...counts].filter(([, n]) => n !== 1)).toEqual([]);
    expect(counts.size).toBe(REPLIES);

    // The same processes did all this: none died and had to be restarted.
    expect(exits).toEqual([]);
    expect(web.exitCode).toBeNull();
    expect(worker.exitCode).toBeNull();
    // The test did cross a failover: some requests were refused while there was no primary.
    expect(unavailable.length).toBeGreaterThan(0);
    // A failover is our storage being away: 503 (retry later), never a 500.
    expect(unavailable.filter((entry) => entry.endsWith(': 500'))).toEqual([]);
    console.log(`failover: primary killed after ${killedAt} of ${INBOUND} inbound acknowledged; ${unavailable.length} requests answered 5xx or not at all and retried, first: ${unavailable.slice(0, 3).join(' | ')}`);
  });
});
