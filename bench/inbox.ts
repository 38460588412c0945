/**
 * The inbox at size: 10,000 patients and 1,000,000 messages in PostgreSQL, bulk-loaded with generate_series
 * (not through the API), then the conversations API's latency for a coordinator and a supervisor, and the
 * inbox page's time to first paint in Debian's chromium. Run alone with `node --import tsx bench/inbox.ts`;
 * `npm run bench` calls benchInbox() after the spine's figures.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { buildAdapters } from '../src/channels/index.ts';
import { buildWebApp } from '../src/cli/build-web.ts';
import { issueToken } from '../src/db/coordinators.ts';
import { createPostgresDb, type Db } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { hashPassword } from '../src/security/passwords.ts';
import { startWeb } from '../src/services/web.ts';
import { WEB_DIST_DIR } from '../src/http/web-app.ts';
import { freePort, TEST_TWILIO } from '../src/test/harness.ts';
import { CHROMIUM, CHROMIUM_ARGS } from '../src/test/browser.ts';

const PATIENTS = Number(process.env.BENCH_INBOX_PATIENTS ?? 10_000);
const MESSAGES_PER_PATIENT = Number(process.env.BENCH_INBOX_MESSAGES_PER_PATIENT ?? 100);
const COORDINATORS = 50;
const TEAMS = 5;
const REQUESTS = 200;
const PASSWORD = 'bench-password-0001';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function bulkLoad(db: Db): Promise<void> {
  const hash = await hashPassword(PASSWORD);
  await db.query(
    `INSERT INTO coordinators (email, name, role, password_hash)
     SELECT 'c' || g || '@bench.test', 'Coordinator ' || g, CASE WHEN g = 0 THEN 'supervisor' ELSE 'coordinator' END, $1
     FROM generate_series(0, $2 - 1) g`,
    [hash, COORDINATORS],
  );
  await db.query(`INSERT INTO teams (name) SELECT 'Team ' || g FROM generate_series(0, $1 - 1) g`, [TEAMS]);
  // Coordinator g belongs to team g % TEAMS; the supervisor (c0) supervises team 0.
  await db.query(
    `INSERT INTO team_members (team_id, coordinator_id, role)
     SELECT t.id, c.id, CASE WHEN c.email = 'c0@bench.test' THEN 'supervisor' ELSE 'member' END
     FROM coordinators c JOIN teams t ON t.name = 'Team ' || (substring(c.email from 2 for position('@' in c.email) - 2)::int % $1)`,
    [TEAMS],
  );
  // A third of patients are waiting, oldest first spread over two days.
  await db.query(
    `INSERT INTO patients (id, display_name, last_seq, waiting_since, last_message_at, priority, tags)
     SELECT md5('p' || g)::uuid, 'Patient ' || g, $2,
            CASE WHEN g % 3 = 0 THEN now() - make_interval(secs => (g % 172800)) END,
            now() - make_interval(secs => (g % 86400)), g % 4, CASE WHEN g % 7 = 0 THEN '{diabetes}'::text[] ELSE '{}' END
     FROM generate_series(0, $1 - 1) g`,
    [PATIENTS, MESSAGES_PER_PATIENT],
  );
  await db.query(
    `INSERT INTO channel_identities (patient_id, channel, address, last_inbound_at)
     SELECT md5('p' || g)::uuid, 'sms', '+1555' || lpad(g::text, 7, '0'), now() - make_interval(secs => (g % 86400)) FROM generate_series(0, $1 - 1) g`,
    [PATIENTS],
  );
  // Patient g → coordinator (g % COORDINATORS), except every 20th waits in a team queue.
  await db.query(
    `INSERT INTO assignments (patient_id, coordinator_id, team_id)
     SELECT md5('p' || g)::uuid,
            CASE WHEN g % 20 = 0 THEN NULL ELSE (SELECT id FROM coordinators WHERE email = 'c' || (g % $2) || '@bench.test') END,
            CASE WHEN g % 20 = 0 THEN (SELECT id FROM teams WHERE name = 'Team ' || (g % $3)) END
     FROM generate_series(0, $1 - 1) g`,
    [PATIENTS, COORDINATORS, TEAMS],
  );
  const words = `'{refill,appointment,insurance,pharmacy,pain,thanks,tomorrow,lisinopril,metformin,reschedule,question,lab,results,copay,ride}'::text[]`;
  await db.query(
    `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, created_at)
     SELECT md5('p' || p)::uuid, s, CASE WHEN s % 2 = 1 THEN 'inbound' ELSE 'outbound' END, 'sms', '+1555' || lpad(p::text, 7, '0'),
            'Message ' || s || ' about ' || (${words})[1 + (p * 7 + s) % 15] || ' and ' || (${words})[1 + (p + s * 3) % 15],
            CASE WHEN s % 2 = 1 THEN 'received' ELSE 'delivered' END,
            now() - make_interval(secs => ($2 - s) * 600 + (p % 600))
     FROM generate_series(0, $1 - 1) p, generate_series(1, $2) s`,
    [PATIENTS, MESSAGES_PER_PATIENT],
  );
  // As autovacuum would have by now: fresh statistics, and a visibility map so counts can be index-only.
  await db.exec(`VACUUM ANALYZE`);
}

async function timeRequests(url: string, token: string, n: number): Promise<{ p50: number; p99: number; rows: number }> {
  const headers = { authorization: `Bearer ${token}` };
  let rows = 0;
  for (let i = 0; i < 20; i++) await (await fetch(url, { headers })).text();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const response = await fetch(url, { headers });
    const body = (await response.json()) as { conversations: unknown[] };
    times.push(performance.now() - started);
    if (response.status !== 200) throw new Error(`inbox answered ${response.status}`);
    rows = body.conversations.length;
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99), rows };
}

async function firstPaint(baseUrl: string): Promise<{ fcpMs: number; rowsVisibleMs: number } | null> {
  if (!existsSync(CHROMIUM)) return null;
  if (!existsSync(`${WEB_DIST_DIR}index.html`)) await buildWebApp();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const login = await context.request.post(`${baseUrl}/api/session/login`, { data: { email: 'c1@bench.test', password: PASSWORD } });
    if (!login.ok()) throw new Error(`bench login failed: ${login.status()}`);
    const samples: Array<{ fcpMs: number; rowsVisibleMs: number }> = [];
    for (let i = 0; i < 5; i++) {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/inbox`);
      await page.locator('.conversation').first().waitFor();
      samples.push(
        await page.evaluate(() => ({
          fcpMs: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? Number.NaN,
          rowsVisibleMs: performance.now(),
        })),
      );
      await page.close();
    }
    // The first load fills the HTTP cache; report the median of the rest, as a coordinator reopening the app sees.
    const warm = samples.slice(1).sort((a, b) => a.rowsVisibleMs - b.rowsVisibleMs);
    return warm[Math.floor(warm.length / 2)]!;
  } finally {
    await browser.close();
  }
}

export async function benchInbox(adminUrl: string): Promise<void> {
  const name = `sb_bench_inbox_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = createPostgresDb({ connectionString: url.toString(), poolSize: 8 });
  try {
    await migrate(db);
    const loadStarted = performance.now();
    await bulkLoad(db);
    const loadS = (performance.now() - loadStarted) / 1000;
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const adapters = buildAdapters({ publicBaseUrl: baseUrl, sendTimeoutMs: 2_000, twilio: { ...TEST_TWILIO, apiBase: 'http://127.0.0.1:9' } });
    const web = await startWeb({ db, logger: pino({ level: 'silent' }), adapters, publicBaseUrl: baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port });
    try {
      const ids = await db.query<{ id: string; email: string }>(`SELECT id, email FROM coordinators WHERE email IN ('c0@bench.test', 'c1@bench.test')`);
      const idOf = (email: string) => ids.rows.find((r) => r.email === email)!.id;
      const coordinator = (await issueToken(db, idOf('c1@bench.test'), 3_600_000)).token;
      const supervisor = (await issueToken(db, idOf('c0@bench.test'), 3_600_000)).token;
      const mine = await timeRequests(`${baseUrl}/api/conversations`, coordinator, REQUESTS);
      const unread = await timeRequests(`${baseUrl}/api/conversations?filter=unread`, coordinator, REQUESTS);
      const search = await timeRequests(`${baseUrl}/api/conversations?q=metformin`, coordinator, REQUESTS);
      const team = await timeRequests(`${baseUrl}/api/conversations`, supervisor, REQUESTS);
      const paint = await firstPaint(baseUrl);
      const line = (label: string, r: { p50: number; p99: number; rows: number }) =>
        console.log(`${label.padEnd(44)} p50 ${r.p50.toFixed(1).padStart(6)} ms   p99 ${r.p99.toFixed(1).padStart(6)} ms   (${r.rows} rows)`);
      console.log(`== inbox (PostgreSQL, ${PATIENTS.toLocaleString()} patients, ${(PATIENTS * MESSAGES_PER_PATIENT).toLocaleString()} messages; bulk load ${loadS.toFixed(0)} s) ==`);
      line('GET /api/conversations, coordinator', mine);
      line('GET /api/conversations?filter=unread', unread);
      line('GET /api/conversations?q=<word>, coordinator', search);
      line('GET /api/conversations, team supervisor', team);
      if (paint) console.log(`inbox page in chromium (warm)              first contentful paint ${paint.fcpMs.toFixed(0)} ms, rows visible ${paint.rowsVisibleMs.toFixed(0)} ms`);
      else console.log('inbox page in chromium: skipped (no /usr/bin/chromium)');
      console.log('');
    } finally {
      await web.stop();
    }
  } finally {
    await db.close();
    const cleanup = new pg.Client({ connectionString: adminUrl });
    await cleanup.connect();
    await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await cleanup.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await benchInbox(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
  process.exit(0);
}
