import type { FastifyInstance } from 'fastify';
import { createApp, type AppDeps } from '../http/server.ts';

export interface WebService {
  app: FastifyInstance;
  url: string;
  stop(): Promise<void>;
}

export async function startWeb(deps: AppDeps & { host: string; port: number }): Promise<WebService> {
  const app = await createApp(deps);
  const url = await app.listen({ host: deps.host, port: deps.port });
  return { app, url, stop: () => app.close() };
}
