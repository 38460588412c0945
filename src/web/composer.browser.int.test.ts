import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { AxeBuilder } from '@axe-core/playwright';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWebApp } from '../cli/build-web.ts';
import { pgliteBackend } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { BROWSER_REQUIRED, CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS_DIR } from '../test/browser.ts';

/**
 * The composer with real key events: a private note typed right after clicking "Private note" must land in the note,
 * never in the j/k/r shortcuts (which once moved to another conversation and sent the rest of the sentence as a
 * WhatsApp reply), and a draft belongs to its patient. Like the inbox suite, the browser flow runs on PGlite.
 */
describe.skipIf(!existsSync(CHROMIUM) && !BROWSER_REQUIRED)('composer modes, drafts and shortcuts in Chromium (PGlite)', () => {
  let h: Harness;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    await buildWebApp();
    await mkdir(SCREENSHOTS_DIR, { recursive: true });
    h = await startHarness(pgliteBackend, { fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 50 }, meta: {} });
    // A running relay: anything the app queued would really reach the fakes.
    await h.startRelay();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await h?.close();
  });

  /** Two WhatsApp patients, oldest first in the inbox, both assigned to a new coordinator. */
  async function coordinatorWithTwoPatients(name: string, patients: Array<{ from: string; displayName: string; text: string }>) {
    const coordinator = await h.createCoordinator({ name });
    await h.database.db.query(`UPDATE coordinators SET is_available = false, status = 'away' WHERE id <> $1`, [coordinator.id]);
    const ids: string[] = [];
    for (const p of patients) {
      expect((await h.meta!.sendWhatsAppText({ webhookUrl: `${h.baseUrl}/webhooks/whatsapp`, from: p.from, text: p.text })).status).toBe(200);
      const found = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE channel = 'whatsapp' AND address = $1`, [`+${p.from}`]);
      const patientId = found.rows[0]!.patient_id;
      await h.database.db.query(`UPDATE patients SET display_name = $2 WHERE id = $1`, [patientId, p.displayName]);
      ids.push(patientId);
    }
    await h.database.db.query(`UPDATE coordinators SET is_available = true, status = 'available'`);
    return { coordinator, ids };
  }

  async function signIn(email: string, password: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
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

  async function expectNothingSent() {
    const outbound = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE direction = 'outbound'`);
    const outbox = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox`);
    expect({ outbound: outbound.rows[0]!.n, outbox: outbox.rows[0]!.n, whatsapp: h.meta!.received.length, sms: h.fake.received.length }).toEqual({ outbound: 0, outbox: 0, whatsapp: 0, sms: 0 });
  }

  it('saves a note typed right after clicking "Private note" whole, with j, k and r in it, and sends nothing to anyone', async () => {
    const { coordinator, ids } = await coordinatorWithTwoPatients('Nia', [
      { from: '15557790001', displayName: 'Maria Lopez', text: 'My sugar readings were high this week' },
      { from: '15557790002', displayName: 'Tom Baker', text: 'When is my next appointment?' },
    ]);
    const [maria] = ids as [string, string];
    const page = await signIn(coordinator.email, coordinator.password);
    await page.locator(`[data-patient-id="${maria}"]`).click();
    await page.getByRole('heading', { name: 'Maria Lopez' }).waitFor();
    // Reply mode says who and how before anything is typed.
    await page.getByRole('button', { name: 'Send to Maria Lopez via WhatsApp' }).waitFor();

    await page.getByRole('button', { name: 'Private note' }).click();
    await page.getByRole('button', { name: 'Save note' }).waitFor();
    const sentence = 'adjust dose and check the lab work before Friday.';
    await page.keyboard.type(sentence);
    await page.locator('.thread').screenshot({ path: `${SCREENSHOTS_DIR}composer-note.png` });
    // The amber note colours keep their contrast.
    const axe = await new AxeBuilder({ page }).include('.composer').analyze();
    expect(axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id)).toEqual([]);
    await page.keyboard.press('Enter');

    const notes = await eventually(
      async () => {
        const rows = await h.database.db.query<{ patient_id: string; note: string }>(`SELECT patient_id, note FROM patient_events WHERE kind = 'note'`);
        return rows.rows.length > 0 && rows.rows;
      },
      { what: 'the private note in the database' },
    );
    expect(notes).toEqual([{ patient_id: maria, note: sentence }]);
    await page.locator('.timeline .note').getByText(sentence).waitFor();
    expect(await page.locator('.conversation.selected').getAttribute('data-patient-id')).toBe(maria);
    await expectNothingSent();
  });

  it('keeps each draft and mode with its patient when switching by click or j/k', async () => {
    const { coordinator, ids } = await coordinatorWithTwoPatients('Omar', [
      { from: '15557790003', displayName: 'Ana Silva', text: 'Can you move my visit?' },
      { from: '15557790004', displayName: 'Ben Okafor', text: 'Thanks for the call' },
    ]);
    const [ana, ben] = ids as [string, string];
    const page = await signIn(coordinator.email, coordinator.password);
    const box = page.locator('#composer-text');

    await page.locator(`[data-patient-id="${ana}"]`).click();
    await page.getByRole('heading', { name: 'Ana Silva' }).waitFor();
    await page.getByLabel('Reply to the patient').click();
    await page.keyboard.type('Your visit moves to Tuesday');
    await page.getByRole('button', { name: 'Send to Ana Silva via WhatsApp' }).waitFor();
    await page.locator('.thread').screenshot({ path: `${SCREENSHOTS_DIR}composer-reply.png` });

    // Clicking another patient: their composer is empty and in reply mode.
    await page.locator(`[data-patient-id="${ben}"]`).click();
    await page.getByRole('heading', { name: 'Ben Okafor' }).waitFor();
    await page.getByRole('button', { name: 'Send to Ben Okafor via WhatsApp' }).waitFor();
    expect(await box.inputValue()).toBe('');

    // k (focus is on Ben's row) goes back to Ana: her draft is back.
    await page.keyboard.press('k');
    await page.getByRole('heading', { name: 'Ana Silva' }).waitFor();
    await expect.poll(() => box.inputValue()).toBe('Your visit moves to Tuesday');

    // j to Ben, a note draft there; Ana is still in reply mode with her draft, Ben still in note mode with his.
    await page.keyboard.press('j');
    await page.getByRole('heading', { name: 'Ben Okafor' }).waitFor();
    expect(await box.inputValue()).toBe('');
    await page.getByRole('button', { name: 'Private note' }).click();
    await page.keyboard.type('Prefers calls after 5pm');
    await page.locator(`[data-patient-id="${ana}"]`).click();
    await page.getByRole('heading', { name: 'Ana Silva' }).waitFor();
    await page.getByRole('button', { name: 'Send to Ana Silva via WhatsApp' }).waitFor();
    expect(await page.getByLabel('Reply to the patient').inputValue()).toBe('Your visit moves to Tuesday');
    await page.locator(`[data-patient-id="${ben}"]`).click();
    await page.getByRole('heading', { name: 'Ben Okafor' }).waitFor();
    await page.getByRole('button', { name: 'Save note' }).waitFor();
    expect(await page.getByLabel('Private note', { exact: true }).inputValue()).toBe('Prefers calls after 5pm');

    // Keys on a composer button are not shortcuts either (a mode button keeps focus when the reply box is disabled).
    // The shortcuts act within the key press (j/k change the URL, r moves focus), so this is checked right after.
    await page.getByRole('button', { name: 'Private note' }).focus();
    for (const key of ['j', 'k', 'r']) await page.keyboard.press(key);
    expect(await page.evaluate(() => [location.pathname, document.activeElement?.textContent])).toEqual([`/inbox/${ben}`, 'Private note']);
    await expectNothingSent();
  });
});
