import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { DEMO_LOGINS } from '../demo.ts';
import { logIn, runSwitchboard, startSwitchboard, type RunningSwitchboard } from '../test/switchboard-process.ts';

const dirs: string[] = [];
const running: RunningSwitchboard[] = [];
afterEach(async () => {
  for (const process of running.splice(0)) await process.stop('SIGKILL');
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

it('a second process on the same embedded DATA_DIR is refused with one line naming the first; a SIGKILLed holder does not block the next start', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'sb-lock-'));
  dirs.push(dataDir);
  const first = await startSwitchboard(dataDir);
  running.push(first);

  const second = await runSwitchboard(dataDir);
  expect(second.code).not.toBe(0);
  expect(second.stdout).toBe('');
  expect(second.stderr).toBe(
    `DATA_DIR ${dataDir} is in use by switchboard pid ${first.pid}; stop it, or set DATA_DIR to another directory, or use DATABASE_URL (PostgreSQL) to run several processes\n`,
  );
  expect((await fetch(`${first.url}/api/health`)).ok).toBe(true);

  expect((await first.stop('SIGKILL')).signal).toBe('SIGKILL');
  const third = await startSwitchboard(dataDir);
  running.push(third);
  expect((await fetch(`${third.url}/api/health`)).ok).toBe(true);
  // The demo data the first process seeded is there: the third opened the same store, alone.
  const ada = DEMO_LOGINS[0]!;
  expect(await logIn(third.url, ada.email, ada.password)).toBe(200);
}, 600_000);
