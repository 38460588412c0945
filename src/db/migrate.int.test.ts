import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.ts';
import { backends } from '../test/databases.ts';

describe.each(backends())('migrations on $name', (backend) => {
  it('applies every migration once, even when several runners start together', async () => {
    const { db, drop } = await backend.create({ migrate: false });
    try {
      const results = await Promise.all([migrate(db), migrate(db), migrate(db)]);
      // Runners may take turns file by file; what matters is that every migration was applied by exactly one.
      const appliedByAll = results.flat();
      expect(new Set(appliedByAll).size).toBe(appliedByAll.length);
      const versions = await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((r) => r.version)).toEqual(results.flat().sort());
      expect(await migrate(db)).toEqual([]);
    } finally {
      await drop();
    }
  });
});
