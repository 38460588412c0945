import { link, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { DataDirInUse, lockDataDir, sendControlRequest, type DataDirLock } from './data-dir-lock.ts';

const dirs: string[] = [];
const locks: DataDirLock[] = [];
afterEach(async () => {
  for (const lock of locks.splice(0)) await lock.release();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-lk-'));
  dirs.push(dir);
  return dir;
}

/** A socket file whose listener is gone, as a SIGKILLed holder leaves it. */
async function leaveDeadGeneration(dataDir: string, generation: number): Promise<void> {
  const lockDir = join(dataDir, 'switchboard-lock');
  await mkdir(lockDir, { recursive: true });
  const server = createServer();
  const bound = join(lockDir, 'dead.sock');
  await new Promise<void>((resolve) => server.listen(bound, resolve));
  await link(bound, join(lockDir, `${generation}.sock`));
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Contenders start a few event-loop turns apart, in a different order each round, so their steps interleave as separate processes' would. */
async function contend(dataDir: string, contenders: number): Promise<{ won: DataDirLock[]; refused: DataDirInUse[] }> {
  const startAfterTurns = async (turns: number) => {
    for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
    return lockDataDir(dataDir, { role: 'server' });
  };
  const outcomes = await Promise.allSettled(Array.from({ length: contenders }, () => startAfterTurns(Math.floor(Math.random() * 8))));
  const won = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  locks.push(...won);
  const refused = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
  for (const reason of refused) expect(reason).toBeInstanceOf(DataDirInUse);
  return { won, refused: refused as DataDirInUse[] };
}

it.each([
  ['a fresh DATA_DIR', 0],
  ['a DATA_DIR whose last holder was killed', 3],
])('exactly one of many simultaneous starts on %s gets the lock', async (_case, deadGeneration) => {
  for (let round = 0; round < 10; round++) {
    const dataDir = await tempDataDir();
    if (deadGeneration) await leaveDeadGeneration(dataDir, deadGeneration);
    const { won, refused } = await contend(dataDir, 12);
    expect(won).toHaveLength(1);
    expect(refused).toHaveLength(11);
    for (const error of refused) expect(error.holder).toEqual({ pid: process.pid, role: 'server' });
    expect(won[0]!.socketPath).toBe(join(dataDir, 'switchboard-lock', `${deadGeneration + 1}.sock`));
    // Dead generations are cleared away by the winner.
    expect((await readdir(join(dataDir, 'switchboard-lock'))).sort()).toEqual([`${deadGeneration + 1}.json`, `${deadGeneration + 1}.sock`]);
  }
});

it('a released lock is taken by the next process; requests wait for serve() and get busy from a holder that lets go without serving', async () => {
  const dataDir = await tempDataDir();
  const first = await lockDataDir(dataDir, { role: 'cli' });
  const early = sendControlRequest(first.socketPath, { op: 'ping' });
  await expect(lockDataDir(dataDir, { role: 'server' })).rejects.toThrow(`DATA_DIR ${dataDir} is in use by switchboard pid ${process.pid} (the switchboard CLI)`);
  await first.release();
  expect(await early).toEqual({ ok: false, error: { code: 'busy', message: expect.stringContaining('retry') } });

  const second = await lockDataDir(dataDir, { role: 'server' });
  locks.push(second);
  const waiting = sendControlRequest(second.socketPath, { op: 'ping', n: 1 });
  second.serve(async (request) => ({ ok: true, echoed: request }));
  expect(await waiting).toEqual({ ok: true, echoed: { op: 'ping', n: 1 } });
  expect(await sendControlRequest(second.socketPath, { op: 'ping', n: 2 })).toEqual({ ok: true, echoed: { op: 'ping', n: 2 } });
});
