import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createPgliteDb, createPostgresDb, type Db } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';

export interface TestDatabase {
  db: Db;
  /** For PostgreSQL: a URL other processes (workers under test) can connect to. */
  url?: string;
  drop(): Promise<void>;
}

export interface TestBackend {
  name: 'pglite' | 'postgres';
  create(options?: { migrate?: boolean }): Promise<TestDatabase>;
}

export const adminPostgresUrl = (): string => process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const pglite: TestBackend = {
  name: 'pglite',
  async create(options) {
    const db = await createPgliteDb({});
    if (options?.migrate !== false) await migrate(db);
    return { db, drop: () => db.close() };
  },
};

/** Each test database is a fresh PostgreSQL database, so suites never see each other's rows. */
const postgres: TestBackend = {
  name: 'postgres',
  async create(options) {
    const name = `sb_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminPostgresUrl() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(adminPostgresUrl());
    url.pathname = `/${name}`;
    const db = createPostgresDb({ connectionString: url.toString(), poolSize: 8 });
    if (options?.migrate !== false) await migrate(db);
    return {
      db,
      url: url.toString(),
      async drop() {
        await db.close();
        const cleanup = new pg.Client({ connectionString: adminPostgresUrl() });
        await cleanup.connect();
        await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await cleanup.end();
      },
    };
  },
};

export const isPostgresAvailable = (): boolean => inject('postgresAvailable');

/** Every storage-touching suite runs on these: PGlite always, PostgreSQL when reachable (required in CI). */
export const backends = (): TestBackend[] => (isPostgresAvailable() ? [pglite, postgres] : [pglite]);
export const postgresBackend = postgres;
export const pgliteBackend = pglite;
