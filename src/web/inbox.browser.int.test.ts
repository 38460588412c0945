import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { AxeBuilder } from '@axe-core/playwright';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWebApp } from '../cli/build-web.ts';
import { pgliteBackend } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { BROWSER_REQUIRED, CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS_DIR } from '../test/browser.ts';



// The browser flow runs on PGlite (one browser session per backend would double a slow suite); the API it drives
// is tested on both backends in src/http/inbox-api.int.test.ts.
describe.skipIf(!existsSync(CHROMIUM) && !BROWSER_REQUIRED)('coordinator web app in Chromium (PGlite)', () => {
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

  async function signIn(email: string, password: string, viewport = { width: 1366, height: 768 }): Promise<Page> {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${h.baseUrl}/inbox`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.getByText('Live', { exact: true }).waitFor();
    return page;
  }

  async function expectNoSeriousAxeViolations(page: Page) {
    const results = await new AxeBuilder({ page }).analyze();
    const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    expect(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`)).toEqual([]);
  }

  it('signs in, shows an inbound SMS live, replies through the fake, shows the delivered tick, and renders XSS as text', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15557770001', 'Can I get a refill on my lisinopril?');
    const patient = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = '+15557770001'`);
    const patientId = patient.rows[0]!.patient_id;
    await h.database.db.query(`UPDATE patients SET display_name = 'Maria Lopez', priority = 2, tags = '{diabetes,spanish}' WHERE id = $1`, [patientId]);

    const page = await signIn(ada.email, ada.password);
    const cookies = await page.context().cookies();
    expect(cookies.find((c) => c.name === 'sb_session')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    const row = page.locator(`[data-patient-id="${patientId}"]`);
    await expect.poll(() => row.textContent()).toContain('lisinopril');

    // Live: a new inbound SMS reaches the open inbox without a reload.
    await h.sendSms('+15557770001', 'Also, my pharmacy closes at 6pm');
    await expect.poll(() => row.textContent()).toContain('pharmacy closes at 6pm');

    await row.click();
    await page.getByRole('heading', { name: 'Maria Lopez' }).waitFor();
    await expect.poll(() => page.locator('.via').textContent()).toMatch(/^via SMS, last used/);
    const composer = page.getByLabel('Reply to the patient');
    await composer.fill('Approved');
    await composer.press('Shift+Enter');
    await composer.pressSequentially('pick it up after 3pm.');
    await composer.press('Enter');
    const sent = await eventually(() => h.fake.received.find((m) => m.form.Body === 'Approved\npick it up after 3pm.'), { what: 'the reply at the fake Twilio' });
    expect(sent.form.To).toBe('+15557770001');
    await page.locator('.message.outbound [data-status="delivered"]').waitFor();

    // Hostile content from a patient is text: no element is created and nothing runs.
    const payload = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><a href="javascript:window.__xss=3">click me</a>`;
    await h.sendSms('+15557770001', payload);
    const last = page.locator('.message.inbound .body').last();
    await expect.poll(() => last.textContent()).toBe(payload);
    expect(await page.locator('.timeline img, .timeline script, .timeline a[href^="javascript"]').count()).toBe(0);
    await last.click();
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();

    await page.screenshot({ path: `${SCREENSHOTS_DIR}thread.png` });
    await expectNoSeriousAxeViolations(page);
  });

  it('moves a handed-off patient to the other coordinator live, and the first can no longer open it by URL or API', async () => {
    const ada = await h.createCoordinator({ name: 'Ada Two' });
    const grace = await h.createCoordinator({ name: 'Grace' });
    // New patients go to the least-loaded coordinator: make sure this one is Ada's.
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [ada.id]);
    await h.sendSms('+15557770002', 'I need to reschedule Thursday');
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    const patient = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = '+15557770002'`);
    const patientId = patient.rows[0]!.patient_id;

    const adaPage = await signIn(ada.email, ada.password);
    const gracePage = await signIn(grace.email, grace.password);
    await adaPage.locator(`[data-patient-id="${patientId}"]`).click();
    await adaPage.getByRole('button', { name: 'Hand off…' }).click();
    await adaPage.getByLabel('Hand off to').selectOption({ label: 'Grace' });
    await adaPage.getByLabel('Note for the receiver').fill('Grace handles scheduling');
    await adaPage.getByRole('button', { name: 'Hand off', exact: true }).click();

    await gracePage.locator(`[data-patient-id="${patientId}"]`).waitFor();
    await expect.poll(() => gracePage.locator('.toast').textContent()).toContain('handed off to you');
    await adaPage.locator(`[data-patient-id="${patientId}"]`).waitFor({ state: 'detached' });
    await adaPage.getByText('This patient was handed off').waitFor();

    // By URL: the app shows "not found"; by API (with the browser's own session): 404.
    await adaPage.goto(`${h.baseUrl}/inbox/${patientId}`);
    await adaPage.getByRole('heading', { name: 'Conversation not found' }).waitFor();
    const status = await adaPage.evaluate(async (id) => (await fetch(`/api/patients/${id}/timeline`)).status, patientId);
    expect(status).toBe(404);

    await gracePage.locator(`[data-patient-id="${patientId}"]`).click();
    await gracePage.locator('.timeline').getByText('Grace handles scheduling').waitFor();
    await gracePage.screenshot({ path: `${SCREENSHOTS_DIR}inbox.png` });
  });

  it('shows an uncertain delivery with its three decisions, and "It arrived" marks it sent', async () => {
    const lee = await h.createCoordinator({ name: 'Lee' });
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [lee.id]);
    await h.sendSms('+15557770009', 'Did you get my forms?');
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = '+15557770009'`)).rows[0]!.patient_id;
    // The state a Messenger, WhatsApp or email send whose answer was lost ends in (src/http/uncertain-delivery.int.test.ts
    // produces it for real); this harness has only SMS, whose lookup is conclusive, so the row is written as it would be.
    const seq = (await h.database.db.query<{ seq: number }>(`UPDATE patients SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq AS seq`, [patientId])).rows[0]!.seq;
    const message = await h.database.db.query<{ id: string }>(
      `INSERT INTO messages (patient_id, seq, direction, channel, address, provider, body, status, author_id)
       VALUES ($1, $2, 'outbound', 'sms', '+15557770009', 'twilio', 'We got them, thank you', 'uncertain', $3) RETURNING id`,
      [patientId, seq, lee.id],
    );
    await h.database.db.query(`INSERT INTO outbox (message_id, patient_id, seq, state, attempts, needs_lookup) VALUES ($1, $2, $3, 'uncertain', 1, true)`, [message.rows[0]!.id, patientId, seq]);

    const page = await signIn(lee.email, lee.password);
    await page.locator(`[data-patient-id="${patientId}"]`).click();
    const bubble = page.locator(`.message.outbound[data-seq="${seq}"]`);
    await expect.poll(() => bubble.locator('[data-status]').textContent()).toContain('Delivery uncertain — the provider may or may not have it');
    const decision = bubble.getByRole('group', { name: 'Delivery uncertain: decide' });
    for (const name of ['Resend', 'It arrived', 'Cancel']) await decision.getByRole('button', { name }).waitFor();
    await expectNoSeriousAxeViolations(page);

    await decision.getByRole('button', { name: 'It arrived' }).click();
    await bubble.locator('[data-status="sent"]').waitFor();
    await decision.waitFor({ state: 'detached' });
    const outbox = await h.database.db.query(`SELECT state FROM outbox WHERE message_id = $1`, [message.rows[0]!.id]);
    expect(outbox.rows).toEqual([{ state: 'sent' }]);
  });

  it('moves between conversations with j/k, focuses the reply box with r, and fits a tablet', async () => {
    const kim = await h.createCoordinator({ name: 'Kim' });
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [kim.id]);
    await h.sendSms('+15557770003', 'first patient');
    await h.sendSms('+15557770004', 'second patient');
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    const page = await signIn(kim.email, kim.password);
    await page.locator('.conversation').nth(1).waitFor();
    await page.keyboard.press('j');
    await expect.poll(() => page.locator('.conversation.selected .preview').textContent()).toContain('first patient');
    await page.keyboard.press('j');
    await expect.poll(() => page.locator('.conversation.selected .preview').textContent()).toContain('second patient');
    await page.keyboard.press('k');
    await expect.poll(() => page.locator('.conversation.selected .preview').textContent()).toContain('first patient');
    await page.keyboard.press('r');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('composer-text');

    // Canned responses come up with "/".
    await h.database.db.query(`INSERT INTO canned_responses (shortcut, title, body) VALUES ('thanks', 'Thanks', 'Thank you for writing in.')`);
    await page.reload();
    await page.getByLabel('Reply to the patient').fill('/tha');
    await page.getByRole('option', { name: /thanks/ }).waitFor();
    await page.getByLabel('Reply to the patient').press('Enter');
    await expect.poll(() => page.getByLabel('Reply to the patient').inputValue()).toBe('Thank you for writing in.');

    await page.setViewportSize({ width: 768, height: 1024 });
    await page.getByRole('button', { name: 'Back to conversations' }).click();
    await page.locator('.conversation').first().waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await page.screenshot({ path: `${SCREENSHOTS_DIR}tablet.png` });
    await expectNoSeriousAxeViolations(page);
  });

  it('loads older history page by page as the coordinator scrolls up', async () => {
    const lee = await h.createCoordinator({ name: 'Lee' });
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [lee.id]);
    await h.sendSms('+15557770005', 'the very first message');
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    const patient = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = '+15557770005'`);
    const patientId = patient.rows[0]!.patient_id;
    // 120 more messages after the first message and its assignment event (seq 1 and 2).
    await h.database.db.query(
      `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status)
       SELECT $1, s, 'inbound', 'sms', '+15557770005', 'history ' || s, 'received' FROM generate_series(3, 122) s`,
      [patientId],
    );
    await h.database.db.query(`UPDATE patients SET last_seq = 122 WHERE id = $1`, [patientId]);
    const page = await signIn(lee.email, lee.password);
    await page.locator(`[data-patient-id="${patientId}"]`).click();
    await page.locator('.timeline [data-seq="122"]').waitFor();
    expect(await page.locator('.timeline .message').count()).toBe(50);
    await expect
      .poll(
        async () => {
          await page.locator('.timeline').evaluate((el) => el.scrollTo(0, 0));
          return page.locator('.timeline').getByText('the very first message').count();
        },
        { timeout: 15_000 },
      )
      .toBe(1);
    expect(await page.locator('.timeline .message').count()).toBe(121);
    await page.getByText('Start of the conversation').waitFor();
  });

  it('shows supervisors every queue with load and oldest wait', async () => {
    const sup = await h.createCoordinator({ name: 'Sam', role: 'supervisor' });
    const team = await h.database.db.query<{ id: string }>(`INSERT INTO teams (name) VALUES ('Primary care') RETURNING id`);
    await h.database.db.query(`INSERT INTO team_members (team_id, coordinator_id, role) SELECT $1, id, CASE WHEN id = $2 THEN 'supervisor' ELSE 'member' END FROM coordinators WHERE role <> 'admin'`, [team.rows[0]!.id, sup.id]);
    const page = await signIn(sup.email, sup.password);
    await page.getByRole('link', { name: 'Supervisor' }).click();
    await page.getByRole('heading', { name: 'Coordinator queues' }).waitFor();
    await page.getByRole('region', { name: 'Coordinator queues' }).getByRole('rowheader', { name: 'Grace' }).waitFor();
    await page.getByRole('region', { name: 'Team queues' }).getByRole('rowheader', { name: 'Primary care' }).waitFor();
    await page.screenshot({ path: `${SCREENSHOTS_DIR}supervisor.png`, fullPage: true });
    await expectNoSeriousAxeViolations(page);
  });
});
