import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { adminPostgresUrl } from './databases.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresAvailable: boolean;
  }
}

/** Decides once per run whether the PostgreSQL suites run, and says so plainly when they don't. */
export default async function setup(project: TestProject): Promise<void> {
  const url = adminPostgresUrl();
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  let available = false;
  let reason = '';
  try {
    await client.connect();
    await client.query('SELECT 1');
    available = true;
  } catch (error) {
    reason = error instanceof Error ? error.message : String(error);
  } finally {
    await client.end().catch(() => {});
  }
  if (!available) {
    if (process.env.REQUIRE_POSTGRES === '1') {
      throw new Error(`REQUIRE_POSTGRES=1 but PostgreSQL at ${url} is unreachable: ${reason}`);
    }
    console.warn(`\n*** PostgreSQL at ${url} is unreachable (${reason}): the PostgreSQL suites are SKIPPED; only PGlite ran. ***\n`);
  }
  project.provide('postgresAvailable', available);
}
