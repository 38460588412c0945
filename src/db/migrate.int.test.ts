import { describe, expect, it } from 'vitest';
import { migrate } from './migrate.ts';
import { backends } from '../test/databases.ts';

describe.each(backends())('migrations on $name', (backend) => {
  it('applies every migration once, even when several runners start together', async () => {
    const { db, drop } = await backend.create({ migrate: false });
    try {
      const results = await Promise.all([migrate(db), migrate(db), migrate(db)]);
      // Each file takes the lock on its own, so different runners may apply different files; none may apply one twice.
      expect(new Set(results.flat()).size).toBe(results.flat().length);
      const versions = await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((r) => r.version)).toEqual(results.flat().sort());
      expect(await migrate(db)).toEqual([]);
    } finally {
      await drop();
    }
  });
});
