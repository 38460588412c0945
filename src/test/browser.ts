import { fileURLToPath } from 'node:url';

/** Debian's chromium (apt-get install chromium); never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** Without these, Chromium's background connections are refused by this machine's closed network, many at a time. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run'];

/** CI installs chromium (.ci/run), so there a missing browser fails the run; on a laptop without it the suites skip, by name. */
export const BROWSER_REQUIRED = process.env.REQUIRE_POSTGRES === '1' || process.env.REQUIRE_BROWSER === '1';

/** Where browser tests save the screenshots the README shows. */
export const SCREENSHOTS_DIR = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
