// What docs/pglite-durability.md claims, checked without strace:
//  - with createDurablePglite, no acknowledged commit leaves unsynced bytes in pg_wal;
//  - under an emulated power loss (only fsynced bytes survive) every acknowledged row comes back,
//    while a plain PGlite data directory loses them in the same emulation (so the check can fail);
//  - after SIGKILL mid-stream, every acknowledged row is there on reopen.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import { createDurablePglite, durabilityStats } from './pglite-durability.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-durability-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

type Op = { kind: 'write'; at: number; bytes: Buffer } | { kind: 'truncate'; size: number };

/**
 * Wraps the fs calls Emscripten's NODEFS makes. Every byte written under dataDir is held as pending
 * until that file is fsynced (or was opened O_SYNC/O_DSYNC); from snapshot() on, synced bytes are
 * also applied to a shadow copy, which is then "the disk after a power cut". Creates, renames and
 * unlinks reach the shadow at once (generous to the code under test about directory metadata).
 */
function recordDisk(dataDir: string) {
  const real = { ...fs };
  const mutable = fs as unknown as Record<string, (...args: never[]) => unknown>;
  const names = ['openSync', 'closeSync', 'writeSync', 'ftruncateSync', 'fsyncSync', 'renameSync', 'unlinkSync', 'mkdirSync', 'rmdirSync', 'writeFileSync'] as const;
  const { O_CREAT, O_TRUNC, O_SYNC, O_DSYNC } = fs.constants;
  const fdPath = new Map<number, string>();
  const syncFds = new Set<number>();
  const pending = new Map<string, Op[]>();
  let shadow: string | undefined;

  const rel = (p: unknown): string | undefined => {
    const r = path.relative(dataDir, path.resolve(String(p)));
    return r.startsWith('..') || path.isAbsolute(r) ? undefined : r;
  };
  const apply = (file: string, op: Op) => {
    if (!shadow) return;
    const target = path.join(shadow, file);
    if (op.kind === 'truncate') {
      if (real.existsSync(target)) real.truncateSync(target, op.size);
      return;
    }
    const fd = real.openSync(target, real.existsSync(target) ? 'r+' : 'w+');
    try {
      real.writeSync(fd, op.bytes, 0, op.bytes.length, op.at);
    } finally {
      real.closeSync(fd);
    }
  };
  const hold = (file: string, op: Op) => {
    const list = pending.get(file) ?? [];
    list.push(op);
    pending.set(file, list);
  };
  const inShadow = (file: string) => (shadow ? path.join(shadow, file) : undefined);

  const wrap = {
    openSync(p: fs.PathLike, flags: number | string, mode?: fs.Mode) {
      const fd = real.openSync(p, flags, mode);
      const file = rel(p);
      syncFds.delete(fd);
      fdPath.delete(fd);
      if (file !== undefined && typeof flags === 'number') {
        fdPath.set(fd, file);
        if (flags & (O_SYNC | O_DSYNC)) syncFds.add(fd);
        const target = inShadow(file);
        if (target && flags & O_CREAT && !real.existsSync(target)) real.writeFileSync(target, '');
        if (flags & O_TRUNC) hold(file, { kind: 'truncate', size: 0 });
      }
      return fd;
    },
    closeSync(fd: number) {
      fdPath.delete(fd);
      syncFds.delete(fd);
      return real.closeSync(fd);
    },
    writeSync(fd: number, buffer: NodeJS.ArrayBufferView, offset?: number, length?: number, position?: number | null) {
      const written = real.writeSync(fd, buffer, offset, length, position);
      const file = fdPath.get(fd);
      if (file !== undefined && typeof position === 'number') {
        const bytes = Buffer.from(Buffer.from(buffer.buffer, buffer.byteOffset + (offset ?? 0), written));
        if (syncFds.has(fd)) apply(file, { kind: 'write', at: position, bytes });
        else hold(file, { kind: 'write', at: position, bytes });
      }
      return written;
    },
    ftruncateSync(fd: number, size?: number) {
      real.ftruncateSync(fd, size);
      const file = fdPath.get(fd);
      if (file !== undefined) hold(file, { kind: 'truncate', size: size ?? 0 });
    },
    fsyncSync(fd: number) {
      real.fsyncSync(fd);
      const file = fdPath.get(fd);
      if (file === undefined) return;
      for (const op of pending.get(file) ?? []) apply(file, op);
      pending.delete(file);
    },
    renameSync(from: fs.PathLike, to: fs.PathLike) {
      real.renameSync(from, to);
      const a = rel(from);
      const b = rel(to);
      if (a === undefined || b === undefined) return;
      const source = inShadow(a);
      if (source && real.existsSync(source)) real.renameSync(source, inShadow(b)!);
      pending.set(b, pending.get(a) ?? []);
      pending.delete(a);
    },
    unlinkSync(p: fs.PathLike) {
      real.unlinkSync(p);
      const file = rel(p);
      if (file === undefined) return;
      pending.delete(file);
      const target = inShadow(file);
      if (target) real.rmSync(target, { force: true });
    },
    mkdirSync(p: fs.PathLike, options?: fs.MakeDirectoryOptions) {
      const made = real.mkdirSync(p, options);
      const file = rel(p);
      const target = file === undefined ? undefined : inShadow(file);
      if (target) real.mkdirSync(target, { recursive: true });
      return made;
    },
    rmdirSync(p: fs.PathLike) {
      real.rmdirSync(p);
      const file = rel(p);
      const target = file === undefined ? undefined : inShadow(file);
      if (target) real.rmSync(target, { recursive: true, force: true });
    },
    writeFileSync(p: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, options?: fs.WriteFileOptions) {
      real.writeFileSync(p, data, options);
      const file = typeof p === 'number' ? undefined : rel(p);
      if (file === undefined) return;
      // Emscripten only uses this to create empty files; content reaching disk needs an fsync like any other.
      const target = inShadow(file);
      if (target && !real.existsSync(target)) real.writeFileSync(target, '');
      if (typeof data === 'string' ? data.length > 0 : data.byteLength > 0) {
        hold(file, { kind: 'truncate', size: 0 });
        hold(file, { kind: 'write', at: 0, bytes: Buffer.from(typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength)) });
      }
    },
  };
  for (const name of names) mutable[name] = wrap[name] as never;

  return {
    /** Files under dataDir written since their last fsync. */
    unsynced: () => [...pending.entries()].filter(([, ops]) => ops.some((op) => op.kind === 'write')).map(([file]) => file),
    /** Everything on disk now counts as durable; from here on the shadow only gets fsynced bytes. */
    snapshot(to: string) {
      real.cpSync(dataDir, to, { recursive: true });
      pending.clear();
      shadow = to;
    },
    restore() {
      for (const name of names) mutable[name] = real[name] as never;
    },
  };
}

async function countRows(dataDir: string): Promise<number> {
  const db = await PGlite.create({ dataDir });
  try {
    return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n;
  } finally {
    await db.close();
  }
}

/** Commits `count` single-row transactions (autocommit and explicit alternating), checking the WAL after each acknowledgement. */
async function commitRows(db: PGlite, disk: ReturnType<typeof recordDisk>, count: number, checkpointAt?: number) {
  const unsyncedWalAtAck: string[][] = [];
  for (let id = 1; id <= count; id++) {
    if (id % 2) await db.query('INSERT INTO t VALUES ($1)', [id]);
    else await db.transaction(async (tx) => void (await tx.query('INSERT INTO t VALUES ($1)', [id])));
    unsyncedWalAtAck.push(disk.unsynced().filter((file) => file.startsWith('pg_wal')));
    if (id === checkpointAt) await db.exec('CHECKPOINT');
  }
  return unsyncedWalAtAck;
}

// Child processes, strace-free fsync counting and power-loss emulation: minutes on a loaded 2-core machine.
describe('createDurablePglite', { timeout: 240_000 }, () => {
  it('acknowledges a commit only after its WAL is fsynced, and keeps every acknowledged row through an emulated power loss', async () => {
    const dataDir = path.join(root, 'durable');
    const disk = recordDisk(dataDir);
    try {
      const db = await createDurablePglite(dataDir);
      await db.exec('CREATE TABLE t (id int PRIMARY KEY)');
      disk.snapshot(`${dataDir}.after-power-cut`);
      const before = durabilityStats(db)!.fsyncs;
      const unsyncedWalAtAck = await commitRows(db, disk, 30, 15);
      expect(unsyncedWalAtAck.every((files) => files.length === 0), JSON.stringify(unsyncedWalAtAck)).toBe(true);
      expect(durabilityStats(db)!.fsyncs - before).toBeGreaterThanOrEqual(30);
      disk.restore();
      expect(await countRows(`${dataDir}.after-power-cut`)).toBe(30);
      await db.close();
    } finally {
      disk.restore();
    }
  });

  it('control: a plain PGlite data directory acknowledges commits whose WAL was never fsynced, and loses them', async () => {
    // If this starts failing, PGlite may have learned to fsync on Node by itself: re-run the
    // measurements in docs/pglite-durability.md before dropping the workaround.
    const dataDir = path.join(root, 'plain');
    const disk = recordDisk(dataDir);
    try {
      const db = await PGlite.create({ dataDir });
      await db.exec('CREATE TABLE t (id int PRIMARY KEY)');
      disk.snapshot(`${dataDir}.after-power-cut`);
      const unsyncedWalAtAck = await commitRows(db, disk, 10);
      expect(unsyncedWalAtAck.every((files) => files.length > 0)).toBe(true);
      disk.restore();
      expect(await countRows(`${dataDir}.after-power-cut`)).toBe(0);
      await db.close();
    } finally {
      disk.restore();
    }
  });

  it('keeps every acknowledged row when the process is SIGKILLed mid-stream', async () => {
    const dataDir = path.join(root, 'killed');
    const modulePath = fileURLToPath(new URL('./pglite-durability.ts', import.meta.url));
    const child = `
      import { writeSync } from 'node:fs';
      import { createDurablePglite } from ${JSON.stringify(modulePath)};
      const db = await createDurablePglite(${JSON.stringify(dataDir)});
      await db.exec('CREATE TABLE IF NOT EXISTS k (trial int, seq int, PRIMARY KEY (trial, seq))');
      writeSync(1, 'ready\\n');
      for (let seq = 1; ; seq++) {
        await db.query('INSERT INTO k VALUES ($1, $2)', [Number(process.env.TRIAL), seq]);
        writeSync(1, 'ack ' + seq + '\\n');
        if (seq % 150 === 0) await db.exec('CHECKPOINT');
      }`;
    for (const [trial, killAfterMs] of [[1, 150 + Math.random() * 300], [2, 400 + Math.random() * 300]] as const) {
      const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], {
        env: { ...process.env, TRIAL: String(trial) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      await new Promise<void>((resolve, reject) => {
        proc.stdout.on('data', (chunk: Buffer) => {
          const first = !out.includes('ready');
          out += chunk.toString();
          if (first && out.includes('ready')) setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
        });
        proc.on('error', reject);
        proc.on('exit', () => resolve());
      });
      const acked = Math.max(0, ...[...out.matchAll(/ack (\d+)/g)].map((m) => Number(m[1])));
      expect(acked, 'the child never acknowledged a row before it was killed').toBeGreaterThan(0);
      const db = await createDurablePglite(dataDir);
      const { n, max } = (await db.query<{ n: number; max: number }>('SELECT count(*)::int AS n, coalesce(max(seq), 0)::int AS max FROM k WHERE trial = $1', [trial])).rows[0]!;
      await db.close();
      expect(n).toBe(max); // no holes
      expect(max).toBeGreaterThanOrEqual(acked); // nothing acknowledged is missing
      expect(max).toBeLessThanOrEqual(acked + 1); // at most the commit in flight when killed
    }
  });
});
