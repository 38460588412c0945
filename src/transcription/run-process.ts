import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { TranscriptionError } from './transcriber.ts';

export interface ProcessResult {
  exitCode: number | null;
  /** Set when the process died of a signal (a native crash shows up here as SIGSEGV or SIGABRT). */
  exitSignal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  /** Peak resident set (VmHWM) last seen while polling /proc; undefined off Linux or for very short runs. */
  peakRssKb?: number;
}

const MAX_CAPTURE_CHARS = 8 * 1024 * 1024;
const RSS_POLL_MS = 20;

/**
 * Runs a command to completion without a shell. A non-zero exit resolves (the caller decides what it means);
 * a missing binary rejects with TranscriptionError('engine-missing'); an aborted signal kills the process
 * group-less child with SIGKILL and rejects with the signal's reason.
 */
export function runProcess(command: string, args: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<ProcessResult> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakRssKb: number | undefined;
    let settled = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < MAX_CAPTURE_CHARS) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      // Keep the tail: the last lines say why a tool failed.
      stderr = (stderr + chunk).slice(-64 * 1024);
    });

    const poll = async (): Promise<void> => {
      if (child.pid === undefined || settled) return;
      const kb = await readPeakRssKb(child.pid);
      if (kb !== undefined) peakRssKb = Math.max(peakRssKb ?? 0, kb);
    };
    const poller = setInterval(() => void poll(), RSS_POLL_MS);
    child.once('spawn', () => void poll());

    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (): void => {
      settled = true;
      clearInterval(poller);
      signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      finish();
      if (error.code === 'ENOENT') {
        reject(new TranscriptionError('engine-missing', `${command} is not installed or not on PATH`, { cause: error }));
      } else {
        reject(new TranscriptionError('engine-failed', `could not run ${command}: ${error.message}`, { cause: error }));
      }
    });
    child.once('close', (exitCode, exitSignal) => {
      finish();
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      resolve({ exitCode, exitSignal, stdout, stderr, wallMs: performance.now() - startedAt, peakRssKb });
    });
  });
}

async function readPeakRssKb(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}
