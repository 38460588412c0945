import type { Queryable } from '../db/db.ts';

/**
 * Tables that change on reads or sign-ins, not on the writes a refused request must not make: the audit log,
 * tokens and sessions (last use), sign-in failures.
 */
const READ_SIDE_TABLES = new Set(['audit_log', 'api_tokens', 'web_sessions', 'login_failures', 'schema_migrations']);

/**
 * A digest of every row of every table (but READ_SIDE_TABLES), per table: equal before and after a request
 * means the request inserted, updated and deleted nothing. Each table's rows are compared as text, sorted.
 */
export async function databaseFingerprint(db: Queryable): Promise<Record<string, string>> {
  const tables = await db.query<{ name: string }>(`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1`);
  const digest: Record<string, string> = {};
  for (const { name } of tables.rows) {
    if (READ_SIDE_TABLES.has(name)) continue;
    const row = await db.query<{ n: string; md5: string }>(`SELECT count(*)::text AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS md5 FROM "${name}" t`);
    digest[name] = `${row.rows[0]!.n}:${row.rows[0]!.md5}`;
  }
  return digest;
}
