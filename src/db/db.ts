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
  /**
   * Resolves when the connection is gone (the server restarted, failed over or terminated the backend). Every
   * session-level lock taken on it is gone too: the holder must stop relying on them and open a new session.
   * PGlite's one session is never lost.
   */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

export interface ListenOptions {
  /**
   * Called after the LISTEN connection was lost and re-established: notifications sent in between were missed,
   * so a subscriber that cannot tolerate a gap re-reads what it serves.
   */
  onReconnect?: () => void;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Subscribes to NOTIFY on `channel`; resolves once LISTEN is active. The subscription outlives connection loss:
   * it is re-established on reconnect (and `onReconnect` called). Returns the unsubscribe.
   */
  listen(channel: string, onNotify: (payload: string) => void, options?: ListenOptions): Promise<() => Promise<void>>;
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
  /** Longest wait between attempts to re-establish the LISTEN connection. */
  maxReconnectDelayMs?: number;
}

/**
 * A checked-out or dedicated client, watched: node-postgres emits 'error' on a client whose server went away (and
 * Node would crash the process on an unheard 'error'); the pool listens only while a client is idle, so each
 * checked-out client needs its own listener. Queries are chained so that concurrent callers sharing one client
 * never overlap (pg 8 deprecates overlapping client.query() calls and pg 9 will refuse them).
 */
function watchClient(client: pg.ClientBase) {
  let lostError: Error | null = null;
  let markLost!: () => void;
  const lost = new Promise<void>((resolve) => (markLost = resolve));
  const onError = (error: Error) => {
    lostError ??= error;
    markLost();
  };
  const onEnd = () => onError(new Error('Connection terminated'));
  client.on('error', onError);
  client.on('end', onEnd);
  let chain: Promise<unknown> = Promise.resolve();
  const run = <R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> => {
    const next = chain.then(async () => {
      if (lostError) throw connectionLost(lostError);
      const result = await client.query(sql, params as unknown[] | undefined);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    });
    chain = next.catch(() => {});
    return next;
  };
  return {
    lost,
    isLost: () => lostError !== null,
    queryable: { query: run, exec: async (sql: string) => void (await run(sql)) } satisfies Queryable,
    unwatch: () => {
      client.removeListener('error', onError);
      client.removeListener('end', onEnd);
    },
  };
}

/** The error a query on a lost connection fails with: recognised by isStorageUnavailable (503, retry later). */
function connectionLost(cause: Error): Error {
  return Object.assign(new Error(`Connection terminated: ${cause.message}`, { cause }), { code: '08006' });
}

export function createPostgresDb(options: PostgresOptions): Db {
  const applicationName = options.applicationName ?? 'switchboard';
  // A multi-host URI (`h1:p1,h2:p2…?target_session_attrs=read-write`) fails over between hosts: see pg-hosts.ts.
  const connection = postgresConnection(options.connectionString);
  const pool = new pg.Pool({
    ...connection,
    max: options.poolSize ?? 10,
    application_name: applicationName,
    connectionTimeoutMillis: 5_000,
    // Notices a server that vanished without closing the socket (a failed-over host, a cut network).
    keepAlive: true,
  });
  // An idle client that loses its server emits here; without a listener Node would crash the process.
  pool.on('error', () => {});
  // And every client gets a listener of its own for life: pg-pool listens only while a client is idle, and a
  // server that goes away can make a client emit more than one error, some after its user has let go of it (seen
  // under a PostgreSQL fast shutdown). Users that care (transactions, sessions) watch the client themselves.
  pool.on('connect', (client) => client.on('error', () => {}));

  const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;
  const maxReconnectDelayMs = options.maxReconnectDelayMs ?? 2_000;

  // One LISTEN connection per process, kept alive: when it is lost, it reconnects with backoff, LISTENs again on
  // every channel that has subscribers, and tells subscribers they may have missed notifications.
  const subscribers = new Map<string, Set<{ onNotify: (payload: string) => void; onReconnect?: () => void }>>();
  let listener: { client: pg.Client; queryable: Queryable } | null = null;
  let connecting: Promise<{ client: pg.Client; queryable: Queryable }> | null = null;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let closed = false;
  let everConnected = false;

  function connectListener(): Promise<{ client: pg.Client; queryable: Queryable }> {
    connecting ??= (async () => {
      const client = new connection.Client({ connectionString: connection.connectionString, application_name: `${applicationName}-listen`, keepAlive: true, connectionTimeoutMillis: 5_000 });
      const watched = watchClient(client);
      client.on('notification', (message) => {
        for (const subscriber of subscribers.get(message.channel) ?? []) subscriber.onNotify(message.payload ?? '');
      });
      try {
        await client.connect();
        for (const channel of subscribers.keys()) await watched.queryable.query(`LISTEN ${quoteIdent(channel)}`);
      } catch (error) {
        await client.end().catch(() => {});
        throw error;
      }
      const current = { client, queryable: watched.queryable };
      listener = current;
      void watched.lost.then(() => {
        if (listener === current) listener = null;
        void client.end().catch(() => {});
        scheduleReconnect(0);
      });
      if (everConnected) {
        for (const set of subscribers.values()) for (const subscriber of set) subscriber.onReconnect?.();
      }
      everConnected = true;
      return current;
    })().finally(() => {
      connecting = null;
    });
    return connecting;
  }

  function scheduleReconnect(attempt: number) {
    if (closed || reconnectTimer || subscribers.size === 0) return;
    const delayMs = Math.min(maxReconnectDelayMs, 100 * 2 ** attempt);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (closed || listener) return;
      connectListener().catch(() => scheduleReconnect(attempt + 1));
    }, delayMs);
    reconnectTimer.unref();
  }

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
      const watched = watchClient(client);
      const tx = watched.queryable;
      let broken = false;
      try {
        await tx.query('BEGIN');
        const value = await fn(tx);
        await tx.query('COMMIT');
        return value;
      } catch (error) {
        await tx.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        watched.unwatch();
        // A lost connection goes back destroyed, never to be handed to the next caller.
        client.release(broken || watched.isLost());
      }
    },
    async listen(channel, onNotify, listenOptions) {
      let set = subscribers.get(channel);
      const isNewChannel = !set;
      if (!set) {
        set = new Set();
        subscribers.set(channel, set);
      }
      const subscriber = { onNotify, ...(listenOptions?.onReconnect ? { onReconnect: listenOptions.onReconnect } : {}) };
      set.add(subscriber);
      try {
        const current = listener ?? (await connectListener());
        // A fresh connection LISTENs on every channel already; an existing one learns the new channel here.
        if (isNewChannel) await current.queryable.query(`LISTEN ${quoteIdent(channel)}`);
      } catch (error) {
        set.delete(subscriber);
        if (set.size === 0) subscribers.delete(channel);
        throw error;
      }
      return async () => {
        set.delete(subscriber);
        if (set.size > 0 || subscribers.get(channel) !== set) return;
        subscribers.delete(channel);
        await listener?.queryable.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => {});
      };
    },
    async openSession() {
      const client = await pool.connect();
      const watched = watchClient(client);
      return {
        ...watched.queryable,
        lost: watched.lost,
        async release() {
          watched.unwatch();
          // A session may hold advisory locks; destroying the connection is the one sure way to drop them all.
          client.release(true);
        },
      };
    },
    async close() {
      closed = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      const current = listener ?? (await connecting?.catch(() => null));
      listener = null;
      await current?.client.end().catch(() => {});
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
      // In-process: the subscription cannot be lost, so there is never a reconnect to report.
      return lite.listen(channel, onNotify);
    },
    async openSession() {
      // There is only one session in PGlite; locks taken on it live until the database closes.
      return { ...root, lost: new Promise<void>(() => {}), async release() {} };
    },
    async close() {
      await lite.close();
    },
  };
}
