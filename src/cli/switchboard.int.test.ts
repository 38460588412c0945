import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { logIn, runCli, startSwitchboard, type RunningSwitchboard } from '../test/switchboard-process.ts';

const dirs: string[] = [];
const running: RunningSwitchboard[] = [];
afterEach(async () => {
  for (const process of running.splice(0)) await process.stop('SIGKILL');
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const create = (dataDir: string, email: string, password: string) =>
  runCli(['coordinator', 'create', '--email', email, '--name', 'Created From CLI', '--password', password], dataDir);

it('coordinator create on an embedded DATA_DIR writes through the running server, and directly when none runs', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'sb-cli-'));
  dirs.push(dataDir);
  const server = await startSwitchboard(dataDir);
  running.push(server);

  const viaServer = await create(dataDir, 'via-server@example.org', 'through-the-server-1');
  expect(viaServer.stderr).toBe('');
  expect(viaServer.code).toBe(0);
  expect(viaServer.stdout).toMatch(/^created coordinator Created From CLI <via-server@example\.org> id=[0-9a-f-]{36}\n$/);
  // Visible at once to the running server: it was written into the server's store, not beside it.
  expect(await logIn(server.url, 'via-server@example.org', 'through-the-server-1')).toBe(200);

  const duplicate = await create(dataDir, 'VIA-SERVER@example.org', 'another-password-2');
  expect(duplicate.code).toBe(1);
  expect(duplicate.stdout).toBe('');
  expect(duplicate.stderr).toBe('a coordinator with email VIA-SERVER@example.org already exists\n');

  const invalid = await create(dataDir, 'short@example.org', 'too-short');
  expect(invalid.code).toBe(2);
  expect(invalid.stdout).toBe('');

  expect((await server.stop()).code).toBe(0);
  const direct = await create(dataDir, 'direct@example.org', 'with-no-server-3');
  expect(direct.stderr).toBe('');
  expect(direct.code).toBe(0);
  expect(direct.stdout).toMatch(/^created coordinator Created From CLI <direct@example\.org> id=/);
  const directDuplicate = await create(dataDir, 'direct@example.org', 'another-password-4');
  expect(directDuplicate.code).toBe(1);
  expect(directDuplicate.stderr).toBe('a coordinator with email direct@example.org already exists\n');

  const restarted = await startSwitchboard(dataDir);
  running.push(restarted);
  expect(await logIn(restarted.url, 'via-server@example.org', 'through-the-server-1')).toBe(200);
  expect(await logIn(restarted.url, 'via-server@example.org', 'another-password-2')).toBe(401);
  expect(await logIn(restarted.url, 'direct@example.org', 'with-no-server-3')).toBe(200);
  expect(await logIn(restarted.url, 'direct@example.org', 'another-password-4')).toBe(401);
}, 600_000);
