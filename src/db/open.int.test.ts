import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { openDatabase } from './open.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

it('the embedded store on disk runs with fsync on and keeps committed rows across a reopen', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'switchboard-open-'));
  dirs.push(dataDir);
  const args = { dataDir, poolSize: 1, applicationName: 'test' };
  const first = await openDatabase(args);
  const settings = await first.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method') ORDER BY name`,
  );
  expect(settings.rows).toEqual([
    { name: 'fsync', setting: 'on' },
    { name: 'synchronous_commit', setting: 'on' },
    { name: 'wal_sync_method', setting: 'fsync' },
  ]);
  await first.query(`INSERT INTO patients (display_name) VALUES ($1)`, ['Kept Across Reopen']);
  await first.close();

  const second = await openDatabase(args);
  const rows = await second.query<{ display_name: string }>(`SELECT display_name FROM patients`);
  expect(rows.rows.map((r) => r.display_name)).toEqual(['Kept Across Reopen']);
  await second.close();
});
