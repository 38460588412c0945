// Durable PGlite on Node: see docs/pglite-durability.md for the measurements behind every line here.
//
// Out of the box, PGlite on a Node data directory never reaches the disk's cache flush:
//  - it starts postgres with `-F` (fsync=off);
//  - even with fsync=on, Emscripten's NODEFS has no `fsync` stream operation, so the WASM fsync()
//    returns 0 without a syscall, and fdatasync() is a stub that always succeeds;
//  - `syncToFs()` and `relaxedDurability` do nothing for NodeFS.
// Writes do go straight to the host files (fs.writeSync) during the query, so a committed row
// survives a process crash, but not an OS crash or power loss.
//
// createDurablePglite fixes that inside the engine instead of after it:
//  1. gives NODEFS the missing `fsync` stream operation (fs.fsyncSync on the host fd);
//  2. starts postgres with fsync=on and wal_sync_method=fsync (fdatasync stays a stub, so the
//     default method would still skip the WAL flush);
// so postgres's own protocol runs for real: the commit record is written and fsynced before the
// commit is acknowledged, checkpoints fsync data files before pg_control moves, WAL segment
// creation and renames fsync the files and their directories. No post-commit hook is needed.
//  3. fsyncs the whole data directory once after opening (the initial cluster is unpacked from a
//     tarball without fsync, and a directory used earlier without this wrapper may hold unsynced
//     pages), then runs one CHECKPOINT and refuses to continue if the fsync operation was not
//     called: a PGlite upgrade that renames the Emscripten internals fails loudly, never silently.

import fs from 'node:fs';
import path from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';

/** PGlite's own start parameters without `-F`, plus the settings that make commit mean durable. */
export const DURABLE_START_PARAMS: readonly string[] = [
  ...PGlite.defaultStartParams.filter((param) => param !== '-F'),
  '-c',
  'fsync=on',
  '-c',
  'synchronous_commit=on',
  '-c',
  'full_page_writes=on',
  '-c',
  // fdatasync() and open_sync are unusable under Emscripten (a no-op and an EINVAL abort); fsync goes through the patched operation.
  'wal_sync_method=fsync',
];

/** Counts host fsyncs made on PGlite's behalf; exposed for tests and health checks. */
export interface DurabilityStats {
  fsyncs: number;
}

const EIO = 29; // Emscripten's errno for EIO: postgres PANICs on a failed fsync rather than acknowledging.

interface EmscriptenStream {
  nfd?: number;
}
interface NodefsModule {
  NODEFS?: { stream_ops?: { fsync?: (stream: EmscriptenStream) => number } };
  FS: { ErrnoError: new (errno: number) => Error };
}

type NodeFsInit = NodeFS['init'];

/** NodeFS whose streams implement fsync with a real fs.fsyncSync on the host file descriptor. */
class FsyncingNodeFS extends NodeFS {
  readonly stats: DurabilityStats = { fsyncs: 0 };

  override async init(...args: Parameters<NodeFsInit>): ReturnType<NodeFsInit> {
    const result = await super.init(...args);
    const stats = this.stats;
    result.emscriptenOpts.preRun = [
      ...(result.emscriptenOpts.preRun ?? []),
      (mod: unknown) => {
        const module = mod as NodefsModule;
        const ops = module.NODEFS?.stream_ops;
        if (!ops) throw new Error('pglite-durability: this PGlite build exposes no NODEFS.stream_ops; cannot make fsync real');
        ops.fsync = (stream) => {
          if (stream.nfd === undefined) return 0;
          try {
            fs.fsyncSync(stream.nfd);
          } catch {
            throw new module.FS.ErrnoError(EIO);
          }
          stats.fsyncs++;
          return 0;
        };
      },
    ];
    return result;
  }
}

/** fsync every file and directory under dir (what initdb --sync-only does). */
export function fsyncTree(dir: string): number {
  let count = 0;
  const visit = (target: string, isDir: boolean): void => {
    if (isDir) for (const entry of fs.readdirSync(target, { withFileTypes: true })) {
      if (entry.isDirectory() || entry.isFile()) visit(path.join(target, entry.name), entry.isDirectory());
    }
    let fd: number;
    try {
      fd = fs.openSync(target, 'r');
    } catch (error) {
      if (isDir && process.platform === 'win32') return; // directories cannot be opened for fsync there
      throw error;
    }
    try {
      fs.fsyncSync(fd);
      count++;
    } finally {
      fs.closeSync(fd);
    }
  };
  visit(dir, true);
  return count;
}

const stats = new WeakMap<PGlite, DurabilityStats>();

/** The fsync counter of a PGlite opened by createDurablePglite (undefined for any other instance). */
export function durabilityStats(db: PGlite): DurabilityStats | undefined {
  return stats.get(db);
}

export type DurablePgliteOptions = Omit<PGliteOptions, 'dataDir' | 'fs' | 'startParams'>;

/**
 * Open (creating if needed) a PGlite database in dataDir whose acknowledged commits survive an OS
 * crash or power loss, as far as the disk honours fsync. Costs one fsync per committed transaction
 * (reads and statements inside a transaction cost nothing extra) and one data-directory sync at open.
 */
export async function createDurablePglite(dataDir: string, options: DurablePgliteOptions = {}): Promise<PGlite> {
  fs.mkdirSync(dataDir, { recursive: true });
  const nodeFs = new FsyncingNodeFS(dataDir);
  const db = await PGlite.create({ ...options, fs: nodeFs, startParams: [...DURABLE_START_PARAMS] });
  try {
    fsyncTree(path.resolve(dataDir));
    const settings = await db.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')`,
    );
    const got = Object.fromEntries(settings.rows.map((row) => [row.name, row.setting]));
    if (got.fsync !== 'on' || got.synchronous_commit !== 'on' || got.wal_sync_method !== 'fsync') {
      throw new Error(`pglite-durability: postgres did not take the durable settings: ${JSON.stringify(got)}`);
    }
    const before = nodeFs.stats.fsyncs;
    await db.exec('CHECKPOINT'); // always writes and fsyncs a checkpoint record and pg_control
    if (nodeFs.stats.fsyncs === before) {
      throw new Error('pglite-durability: CHECKPOINT made no host fsync; the NODEFS fsync patch is not in effect');
    }
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
  stats.set(db, nodeFs.stats);
  return db;
}
