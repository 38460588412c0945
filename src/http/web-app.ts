import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { PUBLIC, policy } from './policy.ts';

/** Where `npm run build` (vite.config.ts) puts the coordinator app. */
export const WEB_DIST_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

// The app is bundled, so nothing inline is needed: a strict policy makes an injected <script> inert even if
// some future rendering bug let one into the DOM.
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

const setSecurityHeaders = (reply: FastifyReply) => {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
};

/** Serves the built app from the same origin as the API, with every unknown non-API path answered by index.html. */
export async function registerWebApp(app: FastifyInstance, root = WEB_DIST_DIR): Promise<void> {
  if (!existsSync(`${root}index.html`)) {
    app.get('/', policy(PUBLIC), async (_request, reply) => reply.type('text/plain').send('The web app is not built yet: run `npm run build` (npm start does it when dist/web is missing).\n'));
    return;
  }
  await app.register(fastifyStatic, {
    root: `${root}assets`,
    // Served by the route below, so it carries a policy like every other route (src/http/policy.ts).
    serve: false,
    index: false,
    setHeaders(res, path) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.header(name, value);
      // Vite names assets by content hash, so they never change; index.html must always be revalidated.
      res.header('cache-control', path.includes('assets') ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
  const sendApp = async (_request: unknown, reply: FastifyReply) => {
    setSecurityHeaders(reply);
    return reply.header('cache-control', 'no-cache').sendFile('index.html', root);
  };
  app.get('/assets/*', policy(PUBLIC), async (request, reply) => reply.sendFile((request.params as { '*': string })['*']));
  app.get('/', policy(PUBLIC), sendApp);
  app.get('/*', policy(PUBLIC), async (request, reply) => {
    const path = request.url.split('?')[0]!;
    if (path.startsWith('/api/') || path.startsWith('/webhooks/')) {
      return reply.status(404).send({ code: 'not_found', message: `no route for ${request.method} ${path}` });
    }
    return sendApp(request, reply);
  });
}
