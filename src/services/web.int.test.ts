import { connect } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgliteBackend, type TestDatabase } from '../test/databases.ts';
import { startWeb } from './web.ts';

describe('stopping the web server', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await pgliteBackend.create();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('finishes a request in flight but does not wait on a connection that never sent a request', async () => {
    const web = await startWeb({ db: database.db, logger: pino({ level: 'silent' }), adapters: new Map(), publicBaseUrl: 'http://127.0.0.1', tokenTtlMs: 60_000, host: '127.0.0.1', port: 0 });
    const { port } = new URL(web.url);
    // A client's spare socket: connected, silent. Node counts it neither idle nor busy, so a plain graceful
    // close waits on it for the 72 s keep-alive timeout, beyond this test's limit.
    const silent = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => silent.once('connect', resolve));
    const silentClosed = new Promise((resolve) => silent.once('close', resolve));
    silent.on('error', () => {});
    // A request in flight when the stop begins still gets its answer.
    // Wait for the server to have the request, not for a guessed interval: a busy machine may take longer.
    const received = new Promise((resolve) => web.app.server.once('request', resolve));
    const inFlight = fetch(`${web.url}/api/me`);
    await received;
    await web.stop();
    expect((await inFlight).status).toBe(401);
    await silentClosed;
  }, 30_000);
});
