import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/** The coordinator app: src/web → dist/web, served by our Fastify server from the same origin (src/http/web-app.ts). */
export default defineConfig({
  root: fileURLToPath(new URL('./src/web/', import.meta.url)),
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('./dist/web/', import.meta.url)),
    emptyOutDir: true,
    // Our CSP forbids inline scripts and styles; keep Vite from inlining small assets as data: modules.
    assetsInlineLimit: 0,
  },
  server: { proxy: { '/api': 'http://127.0.0.1:3000' } },
});
