import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { createDurablePglite } from './pglite-durability.ts';
import { postgresConnection } from './pg-hosts.ts';

export type Row = Record<string, unknown>;

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/** One connection held for as long as the caller needs it: session-level advisory locks live on it. */
export interface Session extends Queryable {
  release(): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Subscribes to NOTIFY on `channel`; resolves once LISTEN is active. Returns the unsubscribe. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  openSession(): Promise<Session>;
  close(): Promise<void>;
}

// pg returns int8 and numeric as strings to avoid precision loss; we only use them for counts and ids that fit.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface PostgresOptions {
  connectionString: string;
  poolSize?: number;
  /** Reported by PostgreSQL in pg_stat_activity, so an operator can tell our processes apart. */
  applicationName?: string;
}

export function createPostgresDb(options: PostgresOptions): Db {
  // A multi-host URI (`h1:p1,h2:p2…?target_session_attrs=read-write`) fails over between hosts: see pg-hosts.ts.
  const connection = postgresConnection(options.connectionString);
  const pool = new pg.Pool({
    ...connection,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'switchboard',
    connectionTimeoutMillis: 5_000,
  });
  // An idle client that loses its server emits here; without a listener Node would crash the process.
  pool.on('error', () => {});

  let listener: pg.Client | null = null;
  let listenerReady: Promise<pg.Client> | null = null;
  const handlers = new Map<string, Set<(payload: string) => void>>();

  async function listenerClient(): Promise<pg.Client> {
    listenerReady ??= (async () => {
      const client = new connection.Client({ connectionString: connection.connectionString, application_name: `${options.applicationName ?? 'switchboard'}-listen` });
      client.on('error', () => {
        // The connection is gone: forget it so the next listen() reconnects and re-subscribes.
        listener = null;
        listenerReady = null;
      });
      client.on('notification', (message) => {
        for (const handler of handlers.get(message.channel) ?? []) handler(message.payload ?? '');
      });
      await client.connect();
      listener = client;
      return client;
    })();
    return listenerReady;
  }

  const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

  return {
    kind: 'postgres',
    async query<R>(sql: string, params?: readonly unknown[]) {
      const result = await pool.query(sql, params as unknown[] | undefined);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    async exec(sql) {
      await pool.query(sql);
    },
    async transaction(fn) {
      // node-postgres: a transaction must run on one client checked out of the pool.
      const client = await pool.connect();
      const tx: Queryable = {
        async query<R>(sql: string, params?: readonly unknown[]) {
          const result = await client.query(sql, params as unknown[] | undefined);
          return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
        },
        async exec(sql) {
          await client.query(sql);
        },
      };
      let broken = false;
      try {
        await client.query('BEGIN');
        const value = await fn(tx);
        await client.query('COMMIT');
        return value;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        client.release(broken);
      }
    },
    async listen(channel, onNotify) {
      let set = handlers.get(channel);
      if (!set) {
        set = new Set();
        handlers.set(channel, set);
      }
      set.add(onNotify);
      const client = await listenerClient();
      await client.query(`LISTEN ${quoteIdent(channel)}`);
      return async () => {
        set.delete(onNotify);
        if (set.size === 0 && listener) await listener.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
      };
    },
    async openSession() {
      const client = await pool.connect();
      let broken = false;
      client.on('error', () => {
        broken = true;
      });
      return {
        async query<R>(sql: string, params?: readonly unknown[]) {
          const result = await client.query(sql, params as unknown[] | undefined);
          return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
        },
        async exec(sql) {
          await client.query(sql);
        },
        async release() {
          // A session may hold advisory locks; destroying the connection is the one sure way to drop them all.
          client.release(true);
          void broken;
        },
      };
    },
    async close() {
      const client = listener;
      listener = null;
      listenerReady = null;
      await client?.end().catch(() => {});
      await pool.end();
    },
  };
}

export interface PgliteOptions {
  /** A directory for durable data (fsync per commit, see pglite-durability.ts); undefined keeps everything in memory (tests). */
  dataDir?: string;
}

export async function createPgliteDb(options: PgliteOptions): Promise<Db> {
  // On disk, PGlite as shipped never fsyncs; the durable wrapper makes an acknowledged commit survive power loss.
  const lite = options.dataDir ? await createDurablePglite(options.dataDir) : await PGlite.create('memory://');
  const toResult = <R>(result: { rows: unknown[]; affectedRows?: number }): QueryResult<R> => ({
    rows: result.rows as R[],
    // PGlite reports affectedRows = 0 for SELECT; pg reports the row count. Match pg.
    rowCount: Math.max(result.rows.length, result.affectedRows ?? 0),
  });
  const queryable = (target: Pick<PGlite, 'query' | 'exec'>): Queryable => ({
    async query<R>(sql: string, params?: readonly unknown[]) {
      return toResult<R>(await target.query(sql, params as unknown[] | undefined));
    },
    async exec(sql) {
      await target.exec(sql);
    },
  });
  const root = queryable(lite);
  return {
    kind: 'pglite',
    ...root,
    async transaction(fn) {
      // PGlite is one connection: its transaction() holds an internal mutex, so other queries wait their turn.
      return lite.transaction(async (tx) => fn(queryable(tx)));
    },
    async listen(channel, onNotify) {
      return lite.listen(channel, onNotify);
    },
    async openSession() {
      // There is only one session in PGlite; locks taken on it live until the database closes.
      return { ...root, async release() {} };
    },
    async close() {
      await lite.close();
    },
  };
}
