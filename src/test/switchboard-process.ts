import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { eventually, freePort } from './harness.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * What `npm start` needs in demo mode, on free ports so copies run side by side. PORT is a free port rather than 0:
 * the demo posts its seed messages to PUBLIC_BASE_URL, which defaults to http://127.0.0.1:$PORT.
 */
async function demoEnv(dataDir: string): Promise<NodeJS.ProcessEnv> {
  return { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: String(await freePort()), SMTP_LISTEN_PORT: '0', LOG_LEVEL: 'fatal' };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunningSwitchboard {
  child: ChildProcess;
  pid: number;
  url: string;
  /** SIGTERM (a normal stop) by default; resolves when the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<Finished>;
}

/** Spawns `node ...argv` in the repository root and collects its output. */
async function spawnNode(argv: string[], dataDir: string): Promise<{ child: ChildProcess; finished: Promise<Finished> }> {
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: await demoEnv(dataDir) });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const finished = new Promise<Finished>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, finished };
}

/** `src/main.ts` on DATA_DIR, for a start that is expected to be refused: its exit, or an error if it keeps running. */
export async function runSwitchboard(dataDir: string, { timeoutMs = 120_000 } = {}): Promise<Finished> {
  const { child, finished } = await spawnNode(['--import', 'tsx', 'src/main.ts'], dataDir);
  let exited: Finished | undefined;
  void finished.then((result) => (exited = result));
  try {
    return await eventually(() => exited, { what: 'the process to exit', timeoutMs });
  } finally {
    child.kill('SIGKILL');
  }
}

/** `src/main.ts` on DATA_DIR in demo mode, resolved once its banner names the URL it listens on. */
export async function startSwitchboard(dataDir: string, { timeoutMs = 240_000 } = {}): Promise<RunningSwitchboard> {
  const { child, finished } = await spawnNode(['--import', 'tsx', 'src/main.ts'], dataDir);
  let stdout = '';
  child.stdout!.on('data', (chunk: string) => (stdout += chunk));
  let exited: Finished | undefined;
  void finished.then((result) => (exited = result));
  try {
    const url = await eventually(
      () => {
        if (exited) throw new Error(`switchboard exited (${exited.code ?? exited.signal}): ${exited.stderr}`);
        return /\(listening on (http:\/\/[^)\s]+)\)/.exec(stdout)?.[1];
      },
      { what: 'the switchboard banner', timeoutMs },
    );
    return {
      child,
      pid: child.pid!,
      url,
      async stop(signal = 'SIGTERM') {
        if (!exited) child.kill(signal);
        return finished;
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

/** `switchboard` (bin/switchboard.js, as `npx switchboard` runs it) on DATA_DIR, to completion. */
export async function runCli(args: string[], dataDir: string): Promise<Finished> {
  return (await spawnNode(['bin/switchboard.js', ...args], dataDir)).finished;
}

export async function logIn(url: string, email: string, password: string): Promise<number> {
  const response = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  return response.status;
}
