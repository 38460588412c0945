import { createServer, type IncomingMessage } from 'node:http';

export interface ReceivedPost {
  path: string;
  headers: IncomingMessage['headers'];
  rawBody: string;
  json: any;
}

/**
 * A loopback HTTP receiver standing in for a Slack incoming webhook or a generic JSON webhook: records every
 * POST; `failWith(status)` makes it refuse (a broken target), `failWith(null)` heals it.
 */
export interface FakeAlertReceiver {
  url: string;
  received: ReceivedPost[];
  failWith(status: number | null): void;
  close(): Promise<void>;
}

export async function startFakeAlertReceiver(): Promise<FakeAlertReceiver> {
  const received: ReceivedPost[] = [];
  let failure: number | null = null;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (failure !== null) {
        response.writeHead(failure).end('failing on purpose');
        return;
      }
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let json: unknown = null;
      try {
        json = JSON.parse(rawBody);
      } catch {
        json = null;
      }
      received.push({ path: request.url ?? '/', headers: request.headers, rawBody, json });
      // Slack answers a plain "ok".
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    received,
    failWith(status) {
      failure = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
