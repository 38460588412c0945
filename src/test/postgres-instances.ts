import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './harness.ts';

const run = promisify(execFile);

/** Where the PostgreSQL server binaries live (Debian's layout by default). */
export const postgresBin = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const canRunPostgresInstances = (): boolean => existsSync(join(postgresBin, 'initdb'));

/** initdb and pg_ctl refuse to run as root: as root, run them as the `postgres` OS user. */
async function asOwner(command: string, args: string[]): Promise<void> {
  const [file, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  await run(file, argv);
}

export interface PostgresInstance {
  readonly port: number;
  /** Starts the server; `readOnly` makes every transaction read-only, as a hot standby would. */
  start(options?: { readOnly?: boolean }): Promise<void>;
  /** `immediate` is a crash: no checkpoint, clients cut off. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
}

/**
 * Throwaway PostgreSQL servers on free loopback ports, trust auth, database `postgres`. One initdb, copied,
 * so they are alike. fsync is off: the tests kill servers, never the machine.
 */
export async function createPostgresInstances(count: number): Promise<{ instances: PostgresInstance[]; remove(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'sb-pg-'));
  if (process.getuid?.() === 0) await run('chown', ['postgres:', root]);
  const template = join(root, 'template');
  await asOwner(join(postgresBin, 'initdb'), ['-D', template, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions']);
  const instances: PostgresInstance[] = [];
  const running = new Set<string>();
  for (let i = 0; i < count; i++) {
    const dataDir = join(root, `node${i}`);
    await cp(template, dataDir, { recursive: true, preserveTimestamps: true });
    if (process.getuid?.() === 0) await run('chown', ['-R', 'postgres:', dataDir]);
    const port = await freePort();
    instances.push({
      port,
      async start(options = {}) {
        const settings = [`-p ${port}`, `-k ${root}`, '-c listen_addresses=127.0.0.1', '-c fsync=off'];
        if (options.readOnly) settings.push('-c default_transaction_read_only=on');
        await asOwner(join(postgresBin, 'pg_ctl'), ['-D', dataDir, '-w', '-l', join(root, `node${i}.log`), '-o', settings.join(' '), 'start']);
        running.add(dataDir);
      },
      async stop(mode = 'fast') {
        await asOwner(join(postgresBin, 'pg_ctl'), ['-D', dataDir, '-w', '-m', mode, 'stop']);
        running.delete(dataDir);
      },
    });
  }
  return {
    instances,
    async remove() {
      for (const dataDir of running) await asOwner(join(postgresBin, 'pg_ctl'), ['-D', dataDir, '-w', '-m', 'immediate', 'stop']).catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}
