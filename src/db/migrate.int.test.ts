import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.ts';
import { backends } from '../test/databases.ts';

describe.each(backends())('migrations on $name', (backend) => {
  it('applies every migration once, even when several runners start together', async () => {
    const { db, drop } = await backend.create({ migrate: false });
    try {
      const results = await Promise.all([migrate(db), migrate(db), migrate(db)]);
      const appliedCounts = results.map((applied) => applied.length);
      // Runners take turns per file, so more than one may apply some of them; what must hold is that no file is applied twice.
      expect(appliedCounts.reduce((sum, n) => sum + n, 0)).toBe(new Set(results.flat()).size);
      const versions = await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((r) => r.version)).toEqual(results.flat().sort());
      expect(await migrate(db)).toEqual([]);
    } finally {
      await drop();
    }
  });
});
