import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWebApp } from '../cli/build-web.ts';
import { evaluateAlerts } from '../ops/alerts.ts';
import { pgliteBackend } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { BROWSER_REQUIRED, CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS_DIR } from '../test/browser.ts';


// Like the inbox suite: the browser flow runs on PGlite; the ops API it calls is tested on both backends in src/ops.
describe.skipIf(!existsSync(CHROMIUM) && !BROWSER_REQUIRED)('supervisor alerts and reports dashboard in Chromium (PGlite)', () => {
  let h: Harness;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    await buildWebApp();
    await mkdir(SCREENSHOTS_DIR, { recursive: true });
    h = await startHarness(pgliteBackend, { fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 50 } });
    await h.startRelay();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await h?.close();
  });

  /** Signs in and records every console error (CSP violations are reported there) and uncaught page error. */
  async function signIn(email: string, password: string): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
    contexts.push(context);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(`${h.baseUrl}/inbox`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    problems.length = 0; // the signed-out session check before the login form answers 401 by design
    return { page, problems };
  }

  it('shows a firing wait alert as a banner a supervisor acknowledges, and a reports dashboard with a table, charts and CSV', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const sam = await h.createCoordinator({ name: 'Sam', role: 'supervisor' });
    // Sam supervises Ada's team: the ops API shows a supervisor their teams' alerts and figures.
    const team = (await h.database.db.query<{ id: string }>(`INSERT INTO teams (name, timezone) VALUES ('Care', 'UTC') RETURNING id`)).rows[0]!.id;
    await h.database.db.query(`INSERT INTO team_members (team_id, coordinator_id, role) VALUES ($1, $2, 'member'), ($1, $3, 'supervisor')`, [team, ada.id, sam.id]);
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [ada.id]);
    await h.sendSms('+15557780001', 'Is my lab result back?');
    await h.sendSms('+15557780002', 'Please call me about my appointment');
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    const found = await h.database.db.query<{ patient_id: string; address: string }>(`SELECT patient_id, address FROM channel_identities WHERE address LIKE '+1555778000%' ORDER BY address`);
    const [answered, waiting] = found.rows.map((r) => r.patient_id) as [string, string];

    // Ada answers the first patient twice; the second keeps waiting.
    for (const body of ['Yes, it is normal.', 'Anything else?']) {
      const sent = await h.api('POST', `/api/patients/${answered}/messages`, { token: ada.token, body: { body } });
      expect(sent.status).toBe(201);
    }
    await eventually(() => h.fake.received.length >= 2, { what: 'both replies at the fake Twilio' });

    // The evaluator, with a clock three hours ahead, sees a wait past the default 120 wall-clock minutes.
    const result = await evaluateAlerts(h.database.db, { now: new Date(Date.now() + 3 * 3_600_000) });
    const firing = result.transitions.find((t) => t.subject === `patient:${waiting}` && t.kind === 'firing');
    expect(firing).toBeDefined();

    const { page, problems } = await signIn(sam.email, sam.password);
    // The banner sits above the inbox for supervisors, with the severity, the summary and a link to the thread.
    const banner = page.locator(`.alert-banner[data-alert-id="${firing!.alertId}"]`);
    await banner.waitFor();
    expect(await banner.textContent()).toContain(`patient ${waiting} has waited`);
    expect(await banner.locator('.severity').textContent()).toBe('page');
    expect(await banner.getByRole('link', { name: 'Open thread' }).getAttribute('href')).toBe(`/inbox/${waiting}`);

    await page.getByRole('link', { name: 'Supervisor' }).click();
    await page.getByRole('heading', { name: 'Reports' }).waitFor();
    await banner.waitFor();
    // Routing rules are readable by supervisors, not only admins.
    await page.getByRole('heading', { name: 'Routing rules (read-only)' }).waitFor();
    await page.getByRole('button', { name: 'Dry run' }).click();
    await expect.poll(() => page.locator('pre.json').count()).toBe(3);
    expect(await page.locator('pre.json').last().textContent()).not.toContain('"error"');

    // The table: one row per coordinator plus the total; Ada sent both replies.
    const adaRow = page.locator('.report-table tr', { has: page.getByRole('rowheader', { name: 'Ada', exact: true }) });
    await adaRow.waitFor();
    expect(await adaRow.locator('td').first().textContent()).toMatch(/\/ 2$/);
    await page.locator('.report-table tr.total').waitFor();
    // Two uPlot charts, each drawn on a canvas of non-zero size.
    await expect.poll(() => page.locator('.chart canvas').count()).toBe(2);
    const sizes = await page.locator('.chart canvas').evaluateAll((els) => els.map((c) => (c as HTMLCanvasElement).width * (c as HTMLCanvasElement).height));
    expect(sizes.every((s) => s > 0)).toBe(true);
    // The supervisor view scrolls inside <main>, so a tall viewport is what fits the whole dashboard in the picture.
    await page.setViewportSize({ width: 1366, height: 1900 });
    await page.screenshot({ path: `${SCREENSHOTS_DIR}dashboard.png` });
    await page.setViewportSize({ width: 1366, height: 900 });

    // CSV: the server answers text/csv; the button saves it as a file with a header row.
    const contentType = await page.evaluate(async () => (await fetch(`/api/ops/reports?groupBy=coordinator&from=2026-01-01&to=2026-01-02&tz=UTC&format=csv`)).headers.get('content-type'));
    expect(contentType).toMatch(/^text\/csv/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    expect(download.suggestedFilename()).toMatch(/^switchboard-coordinator-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv$/);
    const csv = await readFile((await download.path())!, 'utf8');
    const [header, ...lines] = csv.trim().split(/\r?\n/);
    expect(header).toMatch(/^group_by,key,label,messages_in,messages_out,/);
    expect(lines.some((l) => l.includes('Ada'))).toBe(true);

    // Acknowledging hides the banner and records who acknowledged.
    await banner.getByRole('button', { name: /^Acknowledge/ }).click();
    await banner.waitFor({ state: 'detached' });
    const acked = await h.database.db.query<{ acknowledged_by: string }>(`SELECT acknowledged_by FROM alerts WHERE id = $1`, [firing!.alertId]);
    expect(acked.rows[0]!.acknowledged_by).toBe(sam.id);
    await page.reload();
    await page.getByRole('heading', { name: 'Reports' }).waitFor();
    await page.locator('.chart canvas').first().waitFor();
    expect(await banner.count()).toBe(0);

    // No CSP violation or script error on the way (uPlot styles through the CSSOM, which style-src 'self' allows).
    expect(problems).toEqual([]);
  });
});
