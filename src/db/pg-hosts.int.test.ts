import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunPostgresInstances, createPostgresInstances, type PostgresInstance } from '../test/postgres-instances.ts';
import { eventually } from '../test/harness.ts';
import { createPostgresDb, type Db } from './db.ts';
import { postgresConnection } from './pg-hosts.ts';

// Two real servers on free ports; a "standby" is simulated with default_transaction_read_only=on, which is what
// the read-write check (SHOW transaction_read_only) sees on a hot standby too. The real standby and promotion
// are exercised by src/chaos/failover.chaos.ts against pg_auto_failover.
describe.skipIf(!canRunPostgresInstances())('multi-host PostgreSQL URI (pg-hosts.ts) against two servers', () => {
  let servers: Awaited<ReturnType<typeof createPostgresInstances>>;
  let a: PostgresInstance;
  let b: PostgresInstance;
  const uri = (attrs: string) => `postgres://postgres@127.0.0.1:${a.port},127.0.0.1:${b.port}/postgres?target_session_attrs=${attrs}`;
  const portOf = async (db: Db) => Number((await db.query<{ port: string }>(`SELECT current_setting('port') AS port`)).rows[0]?.port);

  beforeAll(async () => {
    servers = await createPostgresInstances(2);
    [a, b] = servers.instances as [PostgresInstance, PostgresInstance];
  });
  afterAll(async () => {
    await servers?.remove();
  });

  it('read-write skips a read-only first host; any takes it', async () => {
    await a.start({ readOnly: true });
    await b.start();
    const readWrite = createPostgresDb({ connectionString: uri('read-write'), poolSize: 2 });
    const any = createPostgresDb({ connectionString: uri('any'), poolSize: 2 });
    try {
      expect(await portOf(readWrite)).toBe(b.port);
      await readWrite.exec('CREATE TABLE IF NOT EXISTS written (id int)');
      expect(await portOf(any)).toBe(a.port);
    } finally {
      await readWrite.close();
      await any.close();
      await a.stop();
      await b.stop();
    }
  });

  it('follows a promotion: the primary dies, the standby becomes writable, the pool and LISTEN find it', async () => {
    await a.start();
    await b.start({ readOnly: true });
    const db = createPostgresDb({ connectionString: uri('read-write'), poolSize: 2 });
    try {
      expect(await portOf(db)).toBe(a.port);
      await a.stop('immediate');
      await b.stop();
      await b.start();
      // The pool's idle connections to the dead server fail once; new ones go to the promoted host.
      expect(await eventually(async () => (await portOf(db).catch(() => undefined)) === b.port, { what: 'a query on the promoted host' })).toBe(true);

      const received: string[] = [];
      await db.listen('failover_test', (payload) => received.push(payload));
      await db.query(`SELECT pg_notify('failover_test', 'hello')`);
      await eventually(() => received.includes('hello'), { what: 'NOTIFY through the promoted host' });

      // The old primary comes back writable (split brain is pg_auto_failover's to prevent): new connections
      // stay on the host that worked last instead of going back to the first in the list.
      const { Client, connectionString } = postgresConnection(uri('read-write'));
      const portOfNewClient = async () => {
        const client = new Client({ connectionString });
        await client.connect();
        const port = Number((await client.query<{ port: string }>(`SELECT current_setting('port') AS port`)).rows[0]?.port);
        await client.end();
        return port;
      };
      expect(await portOfNewClient()).toBe(b.port);
      await a.start();
      expect(await portOfNewClient()).toBe(b.port);
    } finally {
      await db.close();
      await a.stop();
      await b.stop();
    }
  });

  it('with no writable host, connect fails naming every host and why', async () => {
    await a.start({ readOnly: true });
    const { Client, connectionString } = postgresConnection(uri('read-write'));
    const client = new Client({ connectionString, connectionTimeoutMillis: 2_000 });
    try {
      await expect(client.connect()).rejects.toThrow(new RegExp(`no read-write PostgreSQL host among 2 \\(127.0.0.1:${a.port} is a standby; 127.0.0.1:${b.port}: .*\\)`));
    } finally {
      await a.stop();
    }
  });
});
