/**
 * npm run bench: throughput and latency of the spine, on PostgreSQL (when reachable) and PGlite, each figure
 * also as a ratio of the same database's raw single-row INSERT commit rate, plus pg-boss driving the same
 * outbound delivery to the same fake. Sizes fit a 2-core machine; override with BENCH_SCALE=2 etc.
 */
import pg from 'pg';
import pino from 'pino';
import { rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import PgBoss from 'pg-boss';
import { buildAdapters } from '../src/channels/index.ts';
import { createPgliteDb, createPostgresDb, type Db } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { insertCoordinator, issueToken } from '../src/db/coordinators.ts';
import { recordInbound } from '../src/db/patients.ts';
import { createOutbound } from '../src/db/messages.ts';
import { startOutboxRelay } from '../src/outbox/relay.ts';
import { startWeb } from '../src/services/web.ts';
import { startFakeTwilio, type FakeTwilio } from '../src/test/fake-twilio.ts';
import { freePort, TEST_TWILIO } from '../src/test/harness.ts';
import { benchInbox } from './inbox.ts';
import { benchRouting, printRoutingBench } from './routing.ts';
import { runTranscriptionBench } from './transcription.ts';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const CONCURRENCY = 16;
const RAW_INSERTS = Math.round(4000 * SCALE);
const INBOUND = Math.round(3000 * SCALE);
const OUTBOUND = Math.round(4000 * SCALE);
const PATIENTS = 200;
const LATENCY_RATE_PER_S = 100;
const LATENCY_SECONDS = 5;
const MAX_IN_FLIGHT = 100;
const logger = pino({ level: 'silent' });

interface Backend {
  name: 'postgres' | 'pglite';
  create(): Promise<{ db: Db; url?: string; drop(): Promise<void> }>;
}

const adminUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

const postgresBackend: Backend = {
  name: 'postgres',
  async create() {
    const name = `sb_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const db = createPostgresDb({ connectionString: url.toString(), poolSize: CONCURRENCY + 4 });
    return {
      db,
      url: url.toString(),
      async drop() {
        await db.close();
        const cleanup = new pg.Client({ connectionString: adminUrl });
        await cleanup.connect();
        await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await cleanup.end();
      },
    };
  },
};

const pgliteBackend: Backend = {
  name: 'pglite',
  async create() {
    // On disk, as npm start runs it: an in-memory PGlite would flatter the numbers.
    const dir = await mkdtemp(join(tmpdir(), 'sb-bench-'));
    const db = await createPgliteDb({ dataDir: dir });
    return {
      db,
      async drop() {
        await db.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

async function runConcurrently(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

async function rawInsertRate(db: Db): Promise<number> {
  await db.exec(`CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload text NOT NULL)`);
  const seconds = await runConcurrently(RAW_INSERTS, CONCURRENCY, async (i) => {
    await db.query(`INSERT INTO bench_raw (payload) VALUES ($1)`, [`row ${i}`]);
  });
  return RAW_INSERTS / seconds;
}

/** One client, one INSERT at a time: the commit latency every figure below pays at least once. */
async function rawInsertLatencyMs(db: Db): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 300; i++) {
    const started = performance.now();
    await db.query(`INSERT INTO bench_raw (payload) VALUES ($1)`, [`latency ${i}`]);
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

async function seedPatients(db: Db): Promise<{ patientIds: string[]; phones: string[]; coordinatorId: string }> {
  const coordinator = await insertCoordinator(db, { email: `bench-${randomBytes(3).toString('hex')}@bench`, name: 'Bench', role: 'coordinator', passwordHash: 'x' });
  // Routing honours capacity (default 50): lift it so the one bench coordinator takes every bench patient.
  await db.query(`UPDATE coordinators SET capacity = 1000000 WHERE id = $1`, [coordinator!.id]);
  const phones = Array.from({ length: PATIENTS }, (_, i) => `+1555900${String(i).padStart(4, '0')}`);
  const patientIds: string[] = [];
  for (const [i, phone] of phones.entries()) {
    const result = await recordInbound(db, { kind: 'inbound', channel: 'sms', provider: 'twilio', providerMessageId: `SMseed${i}`, from: phone, to: TEST_TWILIO.fromNumber, body: 'seed', media: [] });
    patientIds.push(result.patientId);
  }
  return { patientIds, phones, coordinatorId: coordinator!.id };
}

/** Runs one job in bench/load-generator.ts, a separate process, and returns its JSON result. */
async function runLoadGenerator<T>(job: Record<string, unknown>): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./load-generator.ts', import.meta.url)), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(output) as T;
}

async function inboundRate(db: Db, fake: FakeTwilio): Promise<number> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const adapters = buildAdapters({ publicBaseUrl: baseUrl, sendTimeoutMs: 5_000, twilio: { ...TEST_TWILIO, apiBase: fake.url } });
  const web = await startWeb({ db, logger, adapters, publicBaseUrl: baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port });
  const { seconds } = await runLoadGenerator<{ seconds: number }>({
    mode: 'inbound',
    url: `${baseUrl}/webhooks/twilio/sms`,
    authToken: TEST_TWILIO.authToken,
    accountSid: TEST_TWILIO.accountSid,
    to: TEST_TWILIO.fromNumber,
    count: INBOUND,
    concurrency: CONCURRENCY,
  });
  await web.stop();
  return INBOUND / seconds;
}

async function waitFor(check: () => boolean, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('bench timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function outboundRate(db: Db, fake: FakeTwilio, seed: Awaited<ReturnType<typeof seedPatients>>): Promise<number> {
  for (let i = 0; i < OUTBOUND; i++) {
    await createOutbound(db, { patientId: seed.patientIds[i % PATIENTS]!, authorId: seed.coordinatorId, body: `outbound ${i}` });
  }
  const adapters = buildAdapters({ publicBaseUrl: 'http://127.0.0.1:9', sendTimeoutMs: 5_000, twilio: { ...TEST_TWILIO, apiBase: fake.url } });
  const before = fake.received.length;
  const started = performance.now();
  const relay = await startOutboxRelay({ db, adapters, logger, maxInFlight: MAX_IN_FLIGHT, sendTimeoutMs: 5_000, pollMs: 1_000 });
  await waitFor(() => fake.received.length - before >= OUTBOUND);
  const seconds = (performance.now() - started) / 1000;
  await relay.stop();
  return OUTBOUND / seconds;
}

async function replyLatency(db: Db, fake: FakeTwilio, seed: Awaited<ReturnType<typeof seedPatients>>): Promise<{ p50: number; p99: number; offered: number }> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const adapters = buildAdapters({ publicBaseUrl: baseUrl, sendTimeoutMs: 5_000, twilio: { ...TEST_TWILIO, apiBase: fake.url } });
  const web = await startWeb({ db, logger, adapters, publicBaseUrl: baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port });
  const relay = await startOutboxRelay({ db, adapters, logger, maxInFlight: MAX_IN_FLIGHT, sendTimeoutMs: 5_000, pollMs: 1_000 });
  const { token } = await issueToken(db, seed.coordinatorId, 3_600_000);
  const { sentAt: sentAtRecord } = await runLoadGenerator<{ sentAt: Record<string, number> }>({
    mode: 'replies',
    baseUrl,
    token,
    patientIds: seed.patientIds,
    ratePerSecond: LATENCY_RATE_PER_S,
    total: LATENCY_RATE_PER_S * LATENCY_SECONDS,
  });
  // Both processes read the same system clock (performance.timeOrigin + now), so the difference is the latency.
  const sentAt = new Map(Object.entries(sentAtRecord));
  const arrived = new Set<string>();
  let scanned = 0;
  await waitFor(() => {
    for (; scanned < fake.received.length; scanned++) {
      const body = fake.received[scanned]!.body;
      if (sentAt.has(body)) arrived.add(body);
    }
    return arrived.size === sentAt.size;
  });
  const latencies = fake.received.filter((m) => sentAt.has(m.body)).map((m) => m.receivedAtMs - sentAt.get(m.body)!).sort((a, b) => a - b);
  await relay.stop();
  await web.stop();
  const pick = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { p50: pick(0.5), p99: pick(0.99), offered: LATENCY_RATE_PER_S };
}

async function pgBossOutboundRate(url: string, fake: FakeTwilio): Promise<number> {
  const boss = new PgBoss({ connectionString: url, max: CONCURRENCY + 4 });
  boss.on('error', () => {});
  await boss.start();
  await boss.createQueue('sms');
  const phones = Array.from({ length: PATIENTS }, (_, i) => `+1555920${String(i).padStart(4, '0')}`);
  for (let i = 0; i < OUTBOUND; i += 500) {
    await boss.insert(Array.from({ length: Math.min(500, OUTBOUND - i) }, (_, j) => ({ name: 'sms', data: { to: phones[(i + j) % PATIENTS], body: `pgboss ${i + j}` } })));
  }
  const adapter = buildAdapters({ publicBaseUrl: 'http://127.0.0.1:9', sendTimeoutMs: 5_000, twilio: { ...TEST_TWILIO, apiBase: fake.url } }).get('sms')!;
  const before = fake.received.length;
  const started = performance.now();
  // pg-boss at its fastest documented setting: the minimum polling interval, and as many jobs per fetch as our relay keeps in flight.
  await boss.work<{ to: string; body: string }>('sms', { batchSize: MAX_IN_FLIGHT, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    await Promise.all(jobs.map((job) => adapter.send({ channel: 'sms', to: job.data.to, body: job.data.body, media: [] }, { outboxId: job.id, signal: AbortSignal.timeout(5_000) })));
  });
  await waitFor(() => fake.received.length - before >= OUTBOUND);
  const seconds = (performance.now() - started) / 1000;
  await boss.stop({ graceful: false, wait: false });
  return OUTBOUND / seconds;
}

const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

async function benchBackend(backend: Backend): Promise<Record<string, number>> {
  const { db, url, drop } = await backend.create();
  const fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
  try {
    await migrate(db);
    const raw = await rawInsertRate(db);
    const rawLatency = await rawInsertLatencyMs(db);
    const seed = await seedPatients(db);
    const inbound = await inboundRate(db, fake);
    const outbound = await outboundRate(db, fake, seed);
    const latency = await replyLatency(db, fake, seed);
    const figures: Record<string, number> = { raw, rawLatency, inbound, outbound, p50: latency.p50, p99: latency.p99 };
    if (url) figures.pgBoss = await pgBossOutboundRate(url, fake);
    return figures;
  } finally {
    await fake.close();
    await drop();
  }
}

async function main(): Promise<void> {
  const backends: Backend[] = (await postgresReachable()) ? [postgresBackend, pgliteBackend] : [pgliteBackend];
  if (backends.length === 1) console.log(`PostgreSQL at ${adminUrl} is unreachable: benchmarking PGlite only.`);
  console.log(`Switchboard bench — scale ${SCALE}, ${CONCURRENCY} concurrent clients, ${PATIENTS} patients, relay in-flight ${MAX_IN_FLIGHT}\n`);
  for (const backend of backends) {
    const f = await benchBackend(backend);
    console.log(`== ${backend.name} ==`);
    console.log(`raw single-row INSERT commits/s        ${fmt(f.raw!).padStart(8)}`);
    console.log(`inbound webhooks durably accepted/s    ${fmt(f.inbound!).padStart(8)}   ${ratio(f.inbound!, f.raw!)} of raw INSERT`);
    console.log(`outbound delivered to fake/s           ${fmt(f.outbound!).padStart(8)}   ${ratio(f.outbound!, f.raw!)} of raw INSERT`);
    console.log(`raw single-row INSERT commit p50       ${f.rawLatency!.toFixed(2).padStart(8)} ms`);
    console.log(`reply API → fake receipt @${LATENCY_RATE_PER_S}/s  p50 ${f.p50!.toFixed(1)} ms (${ratio(f.p50!, f.rawLatency!)} a raw INSERT commit), p99 ${f.p99!.toFixed(1)} ms (${ratio(f.p99!, f.rawLatency!)})`);
    if (f.pgBoss !== undefined) {
      console.log(`pg-boss outbound to the same fake/s    ${fmt(f.pgBoss).padStart(8)}   ours is ${ratio(f.outbound!, f.pgBoss)} pg-boss`);
    }
    console.log('');
  }
  if (backends[0]?.name === 'postgres') await benchInbox(adminUrl);
  printRoutingBench(benchRouting());
  if (process.env.BENCH_TRANSCRIPTION !== '0') await runTranscriptionBench();
}

await main();
process.exit(0);
