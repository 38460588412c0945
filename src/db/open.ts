import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createPgliteDb, createPostgresDb, type Db } from './db.ts';
import { migrate } from './migrate.ts';

/** PostgreSQL when DATABASE_URL is set, else the embedded PGlite under DATA_DIR; migrated either way. */
export async function openDatabase(args: { databaseUrl?: string; dataDir: string; poolSize: number; applicationName: string }): Promise<Db> {
  let db: Db;
  if (args.databaseUrl) {
    db = createPostgresDb({ connectionString: args.databaseUrl, poolSize: args.poolSize, applicationName: args.applicationName });
  } else {
    const dir = join(args.dataDir, 'pglite');
    await mkdir(dir, { recursive: true });
    db = await createPgliteDb({ dataDir: dir });
  }
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
  return db;
}
