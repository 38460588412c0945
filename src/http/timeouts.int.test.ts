import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pgliteBackend } from '../test/databases.ts';
import { startHarness, type Harness } from '../test/harness.ts';

/** Slow clients cannot hold sockets forever (Fastify's default requestTimeout is 0). No storage involved: PGlite only. */
describe('HTTP timeouts', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(pgliteBackend, { app: { httpTimeouts: { requestMs: 1_000, headersMs: 1_000, checkIntervalMs: 100 } } });
  });
  afterEach(async () => {
    await h.close();
  });

  it('closes a connection whose body trickles in slower than the request timeout, answering 408', async () => {
    const { port } = new URL(h.baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nFrom=');
    // Never finishes the body; without a request timeout this waits until the test's own timeout fails it.
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection that never finishes its headers', async () => {
    const { port } = new URL(h.baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /api/health HTTP/1.1\r\nHost: x\r\n');
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });
});
