import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.ts';
import { backends } from '../test/databases.ts';

describe.each(backends())('migrations on $name', (backend) => {
  it('applies every migration once, even when several runners start together', async () => {
    const { db, drop } = await backend.create({ migrate: false });
    try {
      const results = await Promise.all([migrate(db), migrate(db), migrate(db)]);
      // Each file is applied by exactly one runner (runners may interleave between files, e.g. on PGlite's one connection).
      expect(new Set(results.flat()).size).toBe(results.flat().length);
      const versions = await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((r) => r.version)).toEqual(results.flat().sort());
      expect(await migrate(db)).toEqual([]);
    } finally {
      await drop();
    }
  });
});
