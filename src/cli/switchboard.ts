import { parseArgs } from 'node:util';
import { parseConfig } from '../config.ts';
import type { Coordinator } from '../db/coordinators.ts';
import { ConnectionClosed, DataDirInUse, lockDataDir, sendControlRequest, type DataDirLock } from '../db/data-dir-lock.ts';
import { openDatabase } from '../db/open.ts';
import { CoordinatorInput, createCoordinatorFromCli, type NewCoordinator } from '../services/control-socket.ts';

const USAGE = `usage:
  switchboard coordinator create --email EMAIL --name NAME --password PASSWORD [--role coordinator|supervisor|admin]

Uses DATABASE_URL, or else the embedded PGlite in DATA_DIR (default ./data): through the running server when one
holds DATA_DIR, directly when none does.`;

// A holder that is starting up, or another CLI that is just finishing, answers within this; past it we give up.
const RETRY_FOR_MS = 30_000;
const RETRY_PAUSE_MS = 100;

type Outcome = { created: Coordinator } | { error: string };

async function run(argv: string[]): Promise<number> {
  const [noun, verb, ...rest] = argv;
  if (noun !== 'coordinator' || verb !== 'create') {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: { email: { type: 'string' }, name: { type: 'string' }, password: { type: 'string' }, role: { type: 'string' } },
    strict: true,
  });
  const input = CoordinatorInput.safeParse(values);
  if (!input.success) {
    process.stderr.write(input.error.issues.map((issue) => `--${issue.path.join('.')}: ${issue.message}`).join('\n') + `\n\n${USAGE}\n`);
    return 2;
  }
  const config = parseConfig(process.env);
  const outcome = config.databaseUrl
    ? await createDirectly({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }, input.data)
    : await createInDataDir(config.dataDir, input.data);
  if ('error' in outcome) {
    process.stderr.write(`${outcome.error}\n`);
    return 1;
  }
  const { created } = outcome;
  process.stdout.write(`created ${created.role} ${created.name} <${created.email}> id=${created.id}\n`);
  return 0;
}

async function createDirectly(store: { databaseUrl?: string; dataDir: string }, input: NewCoordinator): Promise<Outcome> {
  const db = await openDatabase({ ...store, poolSize: 2, applicationName: 'switchboard-cli' });
  try {
    const created = await createCoordinatorFromCli(db, input);
    return created ? { created } : { error: `a coordinator with email ${input.email} already exists` };
  } finally {
    await db.close();
  }
}

/**
 * PGlite is one process: with a server on DATA_DIR, opening the files here would write beside it and lose the row
 * (or worse). So the CLI takes the DATA_DIR lock and writes itself only when nobody holds it; otherwise it asks the
 * holder over its lock socket, and reports success only for the row the holder says it created.
 */
async function createInDataDir(dataDir: string, input: NewCoordinator): Promise<Outcome> {
  const deadline = Date.now() + RETRY_FOR_MS;
  for (;;) {
    let lock: DataDirLock | undefined;
    try {
      lock = await lockDataDir(dataDir, { role: 'cli' });
    } catch (error) {
      if (!(error instanceof DataDirInUse)) throw error;
      const outcome = await askHolder(error.socketPath, input);
      if (outcome !== 'retry') return outcome;
      if (Date.now() > deadline) return { error: `gave up after ${RETRY_FOR_MS / 1000} s: ${error.message}` };
      await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      continue;
    }
    try {
      return await createDirectly({ dataDir }, input);
    } finally {
      await lock.release();
    }
  }
}

/** 'retry' when the holder went away or is another CLI about to let go; a retried create that had landed reports "already exists", which is true. */
async function askHolder(socketPath: string, input: NewCoordinator): Promise<Outcome | 'retry'> {
  let response;
  try {
    response = await sendControlRequest(socketPath, { op: 'coordinator.create', input });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof ConnectionClosed || code === 'ECONNREFUSED' || code === 'ENOENT') return 'retry';
    throw error;
  }
  if (response.ok) return { created: response.coordinator as Coordinator };
  if (response.error.code === 'busy') return 'retry';
  return { error: response.error.message };
}

process.exitCode = await run(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
