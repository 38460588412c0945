import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createApp, type AppDeps } from '../http/server.ts';

export interface WebService {
  app: FastifyInstance;
  url: string;
  stop(): Promise<void>;
}

/** How long a stop waits for requests in flight before it drops their connections too. */
const STOP_DEADLINE_MS = 10_000;

export async function startWeb(deps: AppDeps & { host: string; port: number }): Promise<WebService> {
  const app = await createApp(deps);
  // Connections that have not sent a byte yet (a client's freshly opened socket) are neither idle nor busy to
  // Node, so a graceful close would wait on them for the keep-alive timeout (72 s, seen in a test).
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const url = await app.listen({ host: deps.host, port: deps.port });
  return {
    app,
    url,
    async stop() {
      // Stop accepting, let requests in flight finish (Fastify closes idle keep-alive sockets), drop sockets that
      // never sent a request, and after the deadline drop whatever is still open.
      const closed = app.close();
      const sweep = setInterval(() => {
        for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy();
      }, 50);
      const deadline = setTimeout(() => app.server.closeAllConnections(), STOP_DEADLINE_MS);
      try {
        await closed;
      } finally {
        clearInterval(sweep);
        clearTimeout(deadline);
      }
    },
  };
}
