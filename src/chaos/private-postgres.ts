import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../test/harness.ts';

const run = promisify(execFile);

/**
 * A PostgreSQL cluster of the chaos suite's own, on a free loopback port, so that it can be stopped, restarted
 * and crashed without touching the machine's shared server (other suites and processes use that one).
 * PostgreSQL refuses to run as root: as root, its commands run as the `postgres` OS user.
 */
export interface PrivatePostgres {
  readonly url: string;
  readonly port: number;
  /** `fast` disconnects every client (57P01) and checkpoints; `immediate` is a crash: recovery replays the WAL. */
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  /** Returns once the server accepts connections. */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const version = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!version) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)');
  return join(root, version, 'bin');
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'sb-chaos-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const pg = (tool: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args));
  await pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  // fsync off: the suite crashes the server processes, never the machine, so the OS cache keeps every commit.
  writeFileSync(
    join(dir, 'overrides.conf'),
    [`port = ${port}`, `listen_addresses = '127.0.0.1'`, `unix_socket_directories = '${dir}'`, 'max_connections = 300', 'fsync = off', 'full_page_writes = off', "log_min_messages = 'fatal'"].join('\n') + '\n',
  );
  appendFileSync(join(data, 'postgresql.conf'), `include '${join(dir, 'overrides.conf')}'\n`);
  if (asRoot) await run('chown', ['-R', 'postgres:postgres', dir]);
  const start = async () => {
    await pg('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    async stop(mode) {
      await pg('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
    },
    async destroy() {
      await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
