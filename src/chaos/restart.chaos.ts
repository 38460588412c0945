/**
 * `npm run chaos`: issue 12's proof that the promises of docs/ARCHITECTURE.md §5 hold while everything around the
 * product fails. 2 web and 3 worker processes on a PostgreSQL of the suite's own; signed inbound SMS and API
 * replies, both retried by their clients until acknowledged (as Twilio and an integration would); meanwhile
 * SIGKILLs of web and worker processes, PostgreSQL stops, fast restarts and crash restarts, pg_terminate_backend
 * of random backends, and a provider fake that answers 429 and 5xx, drops connections after accepting, and is slow.
 *
 * Size: CHAOS_MESSAGES (default 100,000, half inbound, half replies) across CHAOS_PATIENTS (default 500).
 * CI runs a short version (see .ci/run). Figures are printed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { hashPassword } from '../security/passwords.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { freePort, TEST_TWILIO } from '../test/harness.ts';
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MESSAGES = Number(process.env.CHAOS_MESSAGES ?? 100_000);
const PATIENTS = Number(process.env.CHAOS_PATIENTS ?? 500);
const INBOUND = Math.ceil(MESSAGES / 2);
const REPLIES = MESSAGES - INBOUND;
const CONCURRENCY = 16;
const PUBLIC_BASE_URL = 'http://switchboard.chaos.test';
const SEND_TIMEOUT_MS = 2_000;
const LOG_DIR = process.env.CHAOS_LOG_DIR ?? join(tmpdir(), `sb-chaos-logs-${process.pid}`);

type Role = 'web' | 'worker';
interface Managed {
  name: string;
  role: Role;
  /** Never killed by the suite: their memory is measured from minute 2 to the end. */
  sentinel: boolean;
  port?: number;
  child?: ChildProcess;
  ready: boolean;
  killedBySuite: boolean;
  starts: number;
  crashes: string[];
  failedStarts: number;
  rss: Array<{ atMs: number; kb: number }>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const phoneOf = (i: number) => `+1555${String(7_000_000 + i).padStart(7, '0')}`;

describe('chaos: restarts, failures and kills under load (PostgreSQL)', () => {
  let postgres: PrivatePostgres;
  let fake: FakeTwilio;
  let url: string;
  const processes: Managed[] = [];
  let stopping = false;
  const startedAt = Date.now();

  beforeAll(async () => {
    mkdirSync(LOG_DIR, { recursive: true });
    postgres = await startPrivatePostgres();
    const admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
    await admin.query('CREATE DATABASE chaos');
    await admin.end();
    url = postgres.url.replace(/\/postgres$/, '/chaos');
    const db = createPostgresDb({ connectionString: url, poolSize: 2 });
    await migrate(db);
    await insertCoordinator(db, { email: 'chaos@switchboard.test', name: 'Chaos Admin', role: 'admin', passwordHash: await hashPassword('chaos-password-123') });
    await db.close();
    fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
  }, 120_000);

  afterAll(async () => {
    stopping = true;
    for (const p of processes) p.child?.kill('SIGKILL');
    await fake?.close();
    await postgres?.destroy();
  });

  function launch(p: Managed): void {
    p.ready = false;
    p.killedBySuite = false;
    p.starts += 1;
    const log = createWriteStream(join(LOG_DIR, `${p.name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', p.role], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: url,
        DATABASE_POOL_SIZE: '6',
        PORT: String(p.port ?? 0),
        PUBLIC_BASE_URL,
        DATA_DIR: join(LOG_DIR, `data-${p.name}`),
        SMTP_LISTEN_PORT: 'off',
        TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
        TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
        TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
        TWILIO_API_BASE: fake.url,
        SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
        OUTBOX_BATCH_SIZE: '16',
        OUTBOX_POLL_MS: '250',
        LOG_LEVEL: 'warn',
      },
    });
    p.child = child;
    child.stdout!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      if (chunk.toString().includes('Switchboard is running')) p.ready = true;
    });
    child.stderr!.on('data', (chunk: Buffer) => log.write(chunk));
    child.once('exit', (code, signal) => {
      log.end(`\n--- exit code=${code} signal=${signal} killedBySuite=${p.killedBySuite}\n`);
      if (p.child !== child || stopping) return;
      if (!p.killedBySuite) {
        // Before it was ready this is a start-up failure (the database was down: exit 1, as designed); after, a crash.
        if (p.ready) p.crashes.push(`exit code=${code} signal=${signal} at ${Math.round((Date.now() - startedAt) / 1000)} s`);
        else p.failedStarts += 1;
      }
      // As a supervisor would: start it again (after a moment, as systemd's RestartSec does).
      setTimeout(() => !stopping && p.child === child && launch(p), p.killedBySuite ? 0 : 500);
    });
  }

  async function startAll(): Promise<void> {
    for (let i = 0; i < 2; i++) processes.push({ name: `web${i}`, role: 'web', sentinel: i === 0, port: await freePort(), ready: false, killedBySuite: false, starts: 0, crashes: [], failedStarts: 0, rss: [] });
    for (let i = 0; i < 3; i++) processes.push({ name: `worker${i}`, role: 'worker', sentinel: i === 0, ready: false, killedBySuite: false, starts: 0, crashes: [], failedStarts: 0, rss: [] });
    for (const p of processes) launch(p);
    const deadline = Date.now() + 120_000;
    while (!processes.every((p) => p.ready)) {
      if (Date.now() > deadline) throw new Error('processes did not start');
      await sleep(100);
    }
  }

  const webs = () => processes.filter((p) => p.role === 'web');

  /** Tries web processes in turn until one answers; retries as a provider or integration would (never gives up). */
  async function deliver(make: (base: string) => Promise<Response>, accept: (status: number) => boolean): Promise<{ status: number; text: string; tries: number }> {
    for (let tries = 1; ; tries++) {
      const web = webs()[tries % 2]!;
      try {
        const response = await make(`http://127.0.0.1:${web.port}`);
        const text = await response.text();
        if (accept(response.status)) return { status: response.status, text, tries };
        if (response.status >= 400 && response.status < 500 && response.status !== 429) throw new Error(`client error ${response.status}: ${text}`);
      } catch (error) {
        if ((error as Error).message.startsWith('client error')) throw error;
      }
      await sleep(Math.min(1_000, 50 * tries));
    }
  }

  it(`${MESSAGES} messages (${INBOUND} inbound, ${REPLIES} replies) for ${PATIENTS} patients: none lost, duplicated or out of order`, async () => {
    await startAll();
    const loadStartedAt = Date.now();
    const signature = (params: Record<string, string>) => {
      let data = `${PUBLIC_BASE_URL}/webhooks/twilio/sms`;
      for (const key of Object.keys(params).sort()) data += key + params[key];
      return createHmacBase64(TEST_TWILIO.authToken, data);
    };
    const ackedInbound = new Set<string>();
    let lastInboundAckAt = 0;
    const inboundAckTimes: number[] = [];
    async function inbound(sid: string, patient: number, body: string) {
      const params = { AccountSid: TEST_TWILIO.accountSid, MessageSid: sid, SmsSid: sid, From: phoneOf(patient), To: TEST_TWILIO.fromNumber, Body: body, NumMedia: '0', ApiVersion: '2010-04-01' };
      await deliver(
        (base) => fetch(`${base}/webhooks/twilio/sms`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature(params) }, body: new URLSearchParams(params), signal: AbortSignal.timeout(10_000) }),
        (status) => status >= 200 && status < 300,
      );
      ackedInbound.add(sid);
      lastInboundAckAt = Date.now();
      inboundAckTimes.push(lastInboundAckAt);
    }

    // Every patient writes first, so a reply has a patient to go to.
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < PATIENTS; i = next++) await inbound(`SMchaos-first-${i}`, i, `hello from patient ${i}`);
    }));
    const ids = new Map<string, string>();
    {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const rows = await client.query<{ address: string; patient_id: string }>(`SELECT address, patient_id FROM channel_identities WHERE channel = 'sms'`);
      for (const row of rows.rows) ids.set(row.address, row.patient_id);
      await client.end();
    }
    expect(ids.size).toBe(PATIENTS);
    const login = await deliver((base) => fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'chaos@switchboard.test', password: 'chaos-password-123' }) }), (s) => s === 200);
    const token = JSON.parse(login.text).token as string;

    fake.setFaults({ latencyMs: [5, 60], rate429: 0.03, rate5xx: 0.03, rateDropAfterAccept: 0.03, rateTimeout: 0.005, timeoutHoldMs: 3_000, seed: 12 });

    // Load: inbound webhooks and replies, interleaved. Replies to one patient go one at a time, in order, so their
    // order is defined; each carries an idempotency key, so a retry after a lost answer adds no copy.
    const expectedReplies = new Map<string, string[]>();
    const outages: Array<{ kind: string; endedAt: number }> = [];
    let inboundLeft = INBOUND - PATIENTS;
    let repliesLeft = REPLIES;
    let sequence = 0;
    const repliesPerPatient = Math.ceil(REPLIES / PATIENTS);
    const patientQueue = Array.from({ length: PATIENTS }, (_, i) => i);
    const replyWorker = async () => {
      for (let p = patientQueue.shift(); p !== undefined; p = patientQueue.shift()) {
        const phone = phoneOf(p);
        for (let k = 0; k < repliesPerPatient && repliesLeft > 0; k++) {
          repliesLeft -= 1;
          const body = `reply ${k} to patient ${p}`;
          const key = `chaos-${p}-${k}`;
          await deliver(
            (base) => fetch(`${base}/api/patients/${ids.get(phone)}/messages`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ body, idempotencyKey: key }), signal: AbortSignal.timeout(10_000) }),
            (status) => status === 200 || status === 201,
          );
          expectedReplies.set(phone, [...(expectedReplies.get(phone) ?? []), body]);
        }
      }
    };
    const inboundWorker = async () => {
      while (inboundLeft > 0) {
        inboundLeft -= 1;
        const n = sequence++;
        await inbound(`SMchaos-${n}`, n % PATIENTS, `message ${n}`);
      }
    };

    // The chaos: one fault every few seconds, each kind in turn (shuffled), until the load is done.
    let loadDone = false;
    const kinds = ['kill-web', 'kill-worker', 'pg-stop', 'pg-restart-fast', 'pg-crash-restart', 'terminate-backends'] as const;
    const faultCounts: Record<string, number> = Object.fromEntries(kinds.map((k) => [k, 0]));
    const chaos = (async () => {
      let round: string[] = [];
      while (!loadDone) {
        await sleep(3_000 + Math.random() * 3_000);
        if (loadDone) break;
        if (round.length === 0) round = [...kinds].sort(() => Math.random() - 0.5);
        const kind = round.shift()!;
        faultCounts[kind]! += 1;
        if (kind === 'kill-web' || kind === 'kill-worker') {
          const victims = processes.filter((p) => p.role === (kind === 'kill-web' ? 'web' : 'worker') && !p.sentinel && p.child);
          const victim = victims[Math.floor(Math.random() * victims.length)]!;
          victim.killedBySuite = true;
          victim.child!.kill('SIGKILL');
        } else if (kind === 'pg-stop') {
          await postgres.stop('fast');
          await sleep(3_000 + Math.random() * 5_000);
          await postgres.start();
          outages.push({ kind, endedAt: Date.now() });
        } else if (kind === 'pg-restart-fast') {
          await postgres.stop('fast');
          await postgres.start();
          outages.push({ kind, endedAt: Date.now() });
        } else if (kind === 'pg-crash-restart') {
          await postgres.stop('immediate');
          await postgres.start();
          outages.push({ kind, endedAt: Date.now() });
        } else {
          const admin = new pg.Client({ connectionString: postgres.url });
          admin.on('error', () => {});
          try {
            await admin.connect();
            await admin.query(`SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE datname = 'chaos' AND application_name LIKE 'switchboard%' ORDER BY random() LIMIT 4) victims`);
          } catch {
            // The server may be restarting: this fault is skipped.
          } finally {
            await admin.end().catch(() => {});
          }
        }
      }
    })();

    const sampler = setInterval(() => {
      for (const p of processes) {
        if (!p.sentinel || !p.child?.pid) continue;
        try {
          const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))?.[1]);
          if (kb) p.rss.push({ atMs: Date.now() - loadStartedAt, kb });
        } catch {
          // The process is between lives.
        }
      }
    }, 2_000);

    await Promise.all([...Array.from({ length: CONCURRENCY / 2 }, inboundWorker), ...Array.from({ length: CONCURRENCY / 2 }, replyWorker)]);
    loadDone = true;
    await chaos;
    const loadSeconds = (Date.now() - loadStartedAt) / 1000;

    // Drain: every acknowledged reply reaches the provider.
    const wanted = REPLIES;
    const drainDeadline = Date.now() + 180_000;
    const uniqueSent = () => new Set(fake.received.map((m) => `${m.to}|${m.body}`)).size;
    while (uniqueSent() < wanted && Date.now() < drainDeadline) await sleep(250);
    clearInterval(sampler);

    // Recovery: after each outage, how long until an inbound webhook was acknowledged again, and until the
    // provider received a reply again (when replies were waiting).
    const recoveries = outages.map((outage) => {
      const inboundAt = inboundAckTimes.find((t) => t >= outage.endedAt);
      const sentAt = fake.received.map((m) => m.receivedAtMs).find((t) => t >= outage.endedAt);
      return { ...outage, inboundS: inboundAt ? (inboundAt - outage.endedAt) / 1000 : null, outboundS: sentAt ? (sentAt - outage.endedAt) / 1000 : null };
    });

    // From the database: every acknowledged inbound exactly once.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const stored = await client.query<{ sid: string; n: number }>(`SELECT provider_message_id AS sid, count(*)::int AS n FROM messages WHERE direction = 'inbound' GROUP BY 1`);
    const attempts = await client.query<{ max: number; avg: number; stuck: number }>(`SELECT max(attempts)::int AS max, avg(attempts)::float AS avg, count(*) FILTER (WHERE state <> 'sent')::int AS stuck FROM outbox`);
    await client.end();
    const storedCounts = new Map(stored.rows.map((r) => [r.sid, r.n]));
    const lostInbound = [...ackedInbound].filter((sid) => !storedCounts.has(sid));
    const duplicatedInbound = stored.rows.filter((r) => r.n > 1);

    // From the provider's log: every acknowledged reply once, in order.
    const byPhone = new Map<string, string[]>();
    for (const m of fake.received) byPhone.set(m.to, [...(byPhone.get(m.to) ?? []), m.body]);
    let duplicates = 0;
    let lost = 0;
    let outOfOrder = 0;
    for (const [phone, expected] of expectedReplies) {
      const got = byPhone.get(phone) ?? [];
      duplicates += got.length - new Set(got).size;
      lost += expected.filter((body) => !got.includes(body)).length;
      const firstSeen = [...new Set(got)];
      if (firstSeen.join('\n') !== expected.filter((b) => firstSeen.includes(b)).join('\n')) outOfOrder += 1;
    }

    const memory = processes.filter((p) => p.sentinel).map((p) => {
      const fromMinute2 = p.rss.filter((s) => s.atMs >= 120_000);
      const first = fromMinute2[0]?.kb;
      const last = fromMinute2.at(-1)?.kb;
      return { name: p.name, atMinute2Mb: first ? first / 1024 : null, atEndMb: last ? last / 1024 : null, peakMb: Math.max(0, ...p.rss.map((s) => s.kb)) / 1024, growth: first && last && fromMinute2.length > 1 ? last / first - 1 : null };
    });
    // What a duplicate or a loss looked like, for whoever must find out why.
    const suspects = [...expectedReplies].filter(([phone, expected]) => {
      const got = byPhone.get(phone) ?? [];
      return got.length !== new Set(got).size || expected.some((body) => !got.includes(body));
    });
    for (const [phone] of suspects.slice(0, 5)) {
      const receipts = fake.received.filter((m) => m.to === phone).map((m) => ({ sid: m.sid, body: m.body, atMs: Math.round(m.receivedAtMs - startedAt) }));
      process.stdout.write(`\n${phone}: ${JSON.stringify(receipts)}\n`);
    }
    const figures = {
      messages: MESSAGES,
      patients: PATIENTS,
      loadSeconds,
      inboundAcknowledged: ackedInbound.size,
      inboundLost: lostInbound.length,
      inboundDuplicated: duplicatedInbound.length,
      repliesAcknowledged: [...expectedReplies.values()].reduce((n, list) => n + list.length, 0),
      repliesReceivedByProvider: fake.received.length,
      repliesLost: lost,
      repliesDuplicated: duplicates,
      patientsOutOfOrder: outOfOrder,
      outboxMaxAttempts: attempts.rows[0]!.max,
      outboxAvgAttempts: Number(attempts.rows[0]!.avg?.toFixed(3)),
      outboxNotSent: attempts.rows[0]!.stuck,
      faults: faultCounts,
      maxRecoveryInboundS: Math.max(0, ...recoveries.map((r) => r.inboundS ?? 0)),
      maxRecoveryOutboundS: Math.max(0, ...recoveries.map((r) => r.outboundS ?? 0)),
      recoveries,
      processes: processes.map((p) => ({ name: p.name, starts: p.starts, failedStarts: p.failedStarts, crashes: p.crashes })),
      memory,
      logs: LOG_DIR,
    };
    process.stdout.write(`\nchaos figures:\n${JSON.stringify(figures, null, 2)}\n`);

    expect(lostInbound).toEqual([]);
    expect(duplicatedInbound).toEqual([]);
    expect(lost).toBe(0);
    expect(duplicates).toBe(0);
    expect(outOfOrder).toBe(0);
    expect(figures.processes.flatMap((p) => p.crashes)).toEqual([]);
    expect(processes.every((p) => p.child && p.child.exitCode === null)).toBe(true);
    for (const r of recoveries) {
      expect(r.inboundS ?? 0, `inbound recovery after ${r.kind}`).toBeLessThan(5);
      expect(r.outboundS ?? 0, `outbound recovery after ${r.kind}`).toBeLessThan(5);
    }
    for (const m of memory) if (m.growth !== null) expect(m.growth, `${m.name} RSS growth from minute 2`).toBeLessThanOrEqual(0.1);
    expect(Object.values(faultCounts).every((n) => n > 0)).toBe(true);
  }, 3 * 3_600_000);
});

function createHmacBase64(key: string, data: string): string {
  return createHmac('sha1', key).update(Buffer.from(data, 'utf8')).digest('base64');
}
