import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { buildCallSettings, createMediaStorage, DEFAULT_CALLS_CONFIG } from '../calls/index.ts';
import { startWeb } from '../services/web.ts';
import type { TestBackend } from './databases.ts';
import { eventually, freePort, TEST_TWILIO, type Harness } from './harness.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface OtherWeb {
  url: string;
  close(): Promise<void>;
}

/**
 * Another web server on the harness's database, with calls (and so visits) on. On PostgreSQL it is a separate OS
 * process (`src/main.ts --role web`, its own pool and LISTEN connection), as in production behind a load
 * balancer. PGlite is one process by design, so there it is a second server in this process on the same PGlite.
 */
export async function startOtherWeb(backend: TestBackend, h: Harness, dir: string, { upTimeoutMs = 45_000 } = {}): Promise<OtherWeb> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  if (backend.name === 'pglite') {
    const mediaDir = join(dir, 'media');
    const web = await startWeb({
      db: h.database.db,
      logger: pino({ level: 'silent' }),
      adapters: h.adapters,
      publicBaseUrl: h.baseUrl,
      tokenTtlMs: 3_600_000,
      host: '127.0.0.1',
      port,
      calls: buildCallSettings({ config: { ...DEFAULT_CALLS_CONFIG, media: { kind: 'local', dir: mediaDir } }, twilio: { ...TEST_TWILIO, apiBase: h.fake.url }, storage: await createMediaStorage({ kind: 'local', dir: mediaDir }), timeoutMs: 2_000 }),
    });
    let stopped: Promise<void> | undefined;
    return { url, close: () => (stopped ??= web.stop()) };
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', 'web'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      PUBLIC_BASE_URL: h.baseUrl,
      DATABASE_URL: h.database.url,
      DATABASE_POOL_SIZE: '4',
      DATA_DIR: dir,
      MEDIA_DIR: join(dir, 'media'),
      TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
      TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
      TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
      TWILIO_API_BASE: h.fake.url,
      SMTP_LISTEN_PORT: 'off',
      LOG_LEVEL: 'fatal',
    },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // SIGTERM: the process stops its roles in order, so its sockets leave visit signaling before it exits.
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`the web process exited with ${child.exitCode}`);
        return (await fetch(`${url}/api/health`)).ok;
      },
      { what: 'the other web process up', timeoutMs: upTimeoutMs },
    );
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return { url, close };
}
