import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/*
 * One process at a time on an embedded (PGlite) DATA_DIR: PGlite has no lock of its own, and two processes on the
 * same files lose data. The lock is a listening unix-domain socket in DATA_DIR/switchboard-lock/, so the OS
 * releases it however the process ends (SIGKILL included): a socket file whose owner died refuses connections.
 * The same socket is the control channel through which the CLI writes into a running server (control-socket.ts);
 * the directory is 0700 and the socket 0600, so only the same OS user reaches it: that is its authentication.
 *
 * Stale files are never deleted and re-bound under the same name (two processes that both saw the file dead would
 * then both win). Instead the lock has generations `<N>.sock`; the highest one present is the lock:
 *  - alive (accepts a connection) → held;
 *  - dead or absent → create `<N+1>.sock` with link(2), which fails if it exists, so exactly one contender wins N+1;
 *  - a socket is listening before its name appears (bound under a temporary name, then hard-linked), so "refuses
 *    connections" can only mean its owner is gone;
 *  - the winner checks no higher generation appeared (one that raced it through a long-gone file), then deletes the
 *    lower ones, and writes `<N>.json` (pid, role) so a refused process can name it. On stop the socket just
 *    closes; its file stays as the next start's dead generation.
 * The number that is highest never decreases, which is what makes "highest alive" a single holder.
 */

export type HolderRole = 'server' | 'cli';

export interface Holder {
  pid: number | null;
  role: HolderRole | null;
}

export type ControlRequest = { op: string } & Record<string, unknown>;
export type ControlResponse = { ok: true } & Record<string, unknown> | { ok: false; error: { code: string; message: string } };
export type ControlHandler = (request: ControlRequest) => Promise<ControlResponse>;

export class DataDirInUse extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: Holder,
    /** Where the holder listens for control requests. */
    readonly socketPath: string,
  ) {
    const who = holder.pid === null ? 'another switchboard process' : `switchboard pid ${holder.pid}${holder.role === 'cli' ? ' (the switchboard CLI)' : ''}`;
    super(`DATA_DIR ${dataDir} is in use by ${who}; stop it, or set DATA_DIR to another directory, or use DATABASE_URL (PostgreSQL) to run several processes`);
    this.name = 'DataDirInUse';
  }
}

export interface DataDirLock {
  readonly socketPath: string;
  /** Starts answering control requests; those that arrived earlier waited for this. */
  serve(handler: ControlHandler): void;
  /** Stops listening, which frees DATA_DIR for the next process; waiting requests are answered `busy`. */
  release(): Promise<void>;
}

const LOCK_DIR = 'switchboard-lock';
const GENERATION = /^(\d+)\.sock$/;
const GENERATION_NOTE = /^(\d+)\.json$/;
const MAX_REQUEST_BYTES = 64 * 1024;
// Past this the OS refuses to bind a unix socket path (104 bytes on macOS, 108 on Linux, NUL included).
const MAX_SOCKET_PATH_BYTES = 100;

export async function lockDataDir(dataDir: string, { role }: { role: HolderRole }): Promise<DataDirLock> {
  const dir = join(dataDir, LOCK_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const tmpPath = join(dir, `tmp-${process.pid}-${randomBytes(4).toString('hex')}.sock`);
  if (Buffer.byteLength(tmpPath) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`DATA_DIR ${dataDir} is too long a path for its lock socket (${tmpPath}); use a shorter DATA_DIR`);
  }

  let handler: ControlHandler | undefined;
  let released = false;
  const waiting: Array<() => void> = [];
  const answer = async (request: ControlRequest, client: Socket): Promise<ControlResponse> => {
    if (!handler && !released) await new Promise<void>((resolve) => waiting.push(resolve));
    if (!handler) return { ok: false, error: { code: 'busy', message: `switchboard pid ${process.pid} is releasing DATA_DIR; retry` } };
    // A client that gave up while the store was opening must not have its request carried out unseen.
    if (client.destroyed) return { ok: false, error: { code: 'gone', message: 'the client hung up' } };
    return handler(request);
  };
  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    void serveConnection(socket, answer);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(tmpPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = async () => {
    released = true;
    for (const wake of waiting.splice(0)) wake();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // A client that connected but never sent its request must not hold the stop up.
    for (const socket of connections) if (socket.bytesRead === 0) socket.destroy();
    await closed;
  };

  try {
    await chmod(tmpPath, 0o600);
    const socketPath = await claimGeneration(dataDir, dir, tmpPath);
    const tmpNote = tmpPath.replace(/\.sock$/, '.json');
    await writeFile(tmpNote, JSON.stringify({ pid: process.pid, role } satisfies Holder), { mode: 0o600 });
    await rename(tmpNote, notePath(socketPath));
    await removeLeftovers(dir, socketPath);
    return {
      socketPath,
      serve(next) {
        handler = next;
        for (const wake of waiting.splice(0)) wake();
      },
      release: close,
    };
  } catch (error) {
    await close();
    throw error;
  } finally {
    // The generation's name is a hard link to the socket; the temporary name is no longer needed.
    await unlink(tmpPath).catch(() => {});
  }
}

async function claimGeneration(dataDir: string, dir: string, tmpPath: string): Promise<string> {
  for (;;) {
    const top = await highestGeneration(dir);
    if (top > 0) {
      const topPath = join(dir, `${top}.sock`);
      const holder = await probe(topPath);
      if (holder === 'gone') continue; // replaced since the listing: look again
      if (holder !== 'dead') throw new DataDirInUse(dataDir, holder, topPath);
    }
    const mine = join(dir, `${top + 1}.sock`);
    try {
      await link(tmpPath, mine);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue; // another process won generation top+1
      throw error;
    }
    if ((await highestGeneration(dir)) === top + 1) return mine;
    await unlink(mine).catch(() => {});
  }
}

async function highestGeneration(dir: string): Promise<number> {
  let top = 0;
  for (const name of await readdir(dir)) {
    const match = GENERATION.exec(name);
    if (match) top = Math.max(top, Number(match[1]));
  }
  return top;
}

/** Lower generations are dead for good; temporary names are left only by a process killed while starting. */
async function removeLeftovers(dir: string, socketPath: string): Promise<void> {
  const mine = Number(GENERATION.exec(socketPath.slice(dir.length + 1))![1]);
  const staleBeforeMs = Date.now() - 60_000;
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const generation = GENERATION.exec(name) ?? GENERATION_NOTE.exec(name);
    if (generation && Number(generation[1]) < mine) await unlink(path).catch(() => {});
    else if (name.startsWith('tmp-')) {
      const info = await stat(path).catch(() => undefined);
      if (info && info.mtimeMs < staleBeforeMs) await unlink(path).catch(() => {});
    }
  }
}

/**
 * Alive is "accepts a connection": the kernel accepts even while the holder's event loop is busy (PGlite's start-up
 * blocks it for seconds), so no reply is awaited. Who it is comes from the note the holder wrote beside its socket.
 */
async function probe(socketPath: string): Promise<Holder | 'dead' | 'gone'> {
  try {
    await new Promise<void>((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') return 'dead';
    if (code === 'ENOENT') return 'gone';
    throw error;
  }
  // The winner writes its note right after linking its socket; give it a moment.
  for (let attempt = 0; attempt < 20; attempt++) {
    const note = await readFile(notePath(socketPath), 'utf8').catch(() => undefined);
    if (note) {
      const holder = JSON.parse(note) as Holder;
      return { pid: holder.pid, role: holder.role };
    }
    await delay(50);
  }
  return { pid: null, role: null };
}

const notePath = (socketPath: string) => socketPath.replace(/\.sock$/, '.json');

/**
 * Sends one request to the process holding DATA_DIR and resolves with its one response. Rejects with the socket
 * error when nobody listens (ECONNREFUSED, ENOENT), and with ConnectionClosed when the holder went away before
 * answering (the request may or may not have been carried out).
 */
export async function sendControlRequest(socketPath: string, request: ControlRequest): Promise<ControlResponse> {
  return await (await connectAndSend(socketPath, request)).reply;
}

export class ConnectionClosed extends Error {
  constructor() {
    super('the switchboard process holding DATA_DIR closed the connection without answering');
    this.name = 'ConnectionClosed';
  }
}

/** Resolves once connected (so connection errors reject it) with the pending reply. */
function connectAndSend(socketPath: string, request: ControlRequest): Promise<{ reply: Promise<ControlResponse> }> {
  return new Promise((resolveConnected, rejectConnected) => {
    const socket = createConnection(socketPath);
    socket.once('error', rejectConnected);
    socket.once('connect', () => {
      socket.off('error', rejectConnected);
      const reply = readLine(socket)
        .then((line) => JSON.parse(line) as ControlResponse)
        .finally(() => socket.destroy());
      socket.write(`${JSON.stringify(request)}\n`);
      resolveConnected({ reply });
    });
  });
}

/** One request or response is one line of JSON. */
function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end >= 0) resolve(buffered.slice(0, end));
      else if (buffered.length > MAX_REQUEST_BYTES) reject(new Error('control message too long'));
    });
    socket.once('error', reject);
    socket.once('end', () => reject(new ConnectionClosed()));
    socket.once('close', () => reject(new ConnectionClosed()));
  });
}

async function serveConnection(socket: Socket, answer: (request: ControlRequest, client: Socket) => Promise<ControlResponse>): Promise<void> {
  socket.on('error', () => {}); // a client that hangs up early is its own problem
  let response: ControlResponse;
  try {
    const line = await readLine(socket);
    const request = JSON.parse(line) as unknown;
    if (typeof request !== 'object' || request === null || typeof (request as { op?: unknown }).op !== 'string') {
      response = { ok: false, error: { code: 'bad_request', message: 'a request is one JSON object with an "op" string' } };
    } else {
      response = await answer(request as ControlRequest, socket);
    }
  } catch (error) {
    if (error instanceof ConnectionClosed) return;
    response = { ok: false, error: { code: error instanceof SyntaxError ? 'bad_request' : 'internal', message: error instanceof Error ? error.message : String(error) } };
  }
  if (!socket.destroyed) socket.end(`${JSON.stringify(response)}\n`);
}
