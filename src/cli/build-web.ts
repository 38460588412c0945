import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WEB_DIST_DIR } from '../http/web-app.ts';

/**
 * Builds the coordinator app (src/web → dist/web) with Vite. `--if-missing` skips the build when one exists,
 * which is how `npm start` works on a fresh clone without a separate build step.
 */
export async function buildWebApp(): Promise<void> {
  const { build } = await import('vite');
  await build({ configFile: fileURLToPath(new URL('../../vite.config.ts', import.meta.url)), logLevel: 'warn' });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const ifMissing = process.argv.includes('--if-missing');
  if (ifMissing && existsSync(`${WEB_DIST_DIR}index.html`)) process.exit(0);
  process.stdout.write('Building the web app (dist/web)…\n');
  await buildWebApp();
}
