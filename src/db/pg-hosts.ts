import pg from 'pg';

// node-postgres (pg 8, pg-connection-string 2) takes one host per connection string: a libpq multi-host URI
// such as pg_auto_failover prints (`postgres://h1:p1,h2:p2/db?target_session_attrs=read-write`) is an
// "Invalid URL" to it. This module splits such a URI into one URI per host, which pg does understand, and
// gives pg.Pool a Client class that picks the host the way libpq does.

export type TargetSessionAttrs = 'read-write' | 'any';

export interface PostgresHost {
  host: string;
  port: number;
  /** The original URI naming only this host (and without target_session_attrs): what pg can parse. */
  connectionString: string;
}

export interface PostgresHosts {
  hosts: PostgresHost[];
  targetSessionAttrs: TargetSessionAttrs;
}

export class PostgresUriError extends Error {
  override readonly name = 'PostgresUriError';
}

const DEFAULT_PORT = 5432;

/**
 * Parses `postgres[ql]://[user[:password]@]host[:port][,host[:port]…][/database][?params]` (libpq's URI form).
 * A host without a port gets 5432, as in libpq. Throws PostgresUriError, whose message never contains the password.
 */
export function parsePostgresHosts(uri: string): PostgresHosts {
  const scheme = /^(postgres(?:ql)?):\/\//.exec(uri);
  if (!scheme) throw new PostgresUriError('a PostgreSQL URI starts with postgres:// or postgresql://');
  const rest = uri.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd === -1 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at + 1);
  const hostList = authority.slice(at + 1);

  const queryStart = tail.indexOf('?');
  const path = queryStart === -1 ? tail : tail.slice(0, queryStart);
  const params = new URLSearchParams(queryStart === -1 ? '' : tail.slice(queryStart + 1));
  const attrs = params.get('target_session_attrs') ?? 'any';
  if (attrs !== 'read-write' && attrs !== 'any') {
    throw new PostgresUriError(`target_session_attrs=${attrs} is not supported (read-write or any)`);
  }
  params.delete('target_session_attrs');
  const query = params.size > 0 ? `?${params.toString()}` : '';

  if (hostList === '') throw new PostgresUriError('the URI names no host');
  const hosts = hostList.split(',').map((entry): PostgresHost => {
    const match = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d*))?$/.exec(entry);
    if (!match) throw new PostgresUriError(`cannot read host "${entry}"`);
    const [, hostPart = '', portPart] = match;
    const port = portPart ? Number(portPart) : DEFAULT_PORT;
    if (port < 1 || port > 65535) throw new PostgresUriError(`port ${portPart} of host ${hostPart} is out of range`);
    const host = decodeURIComponent(hostPart.replace(/^\[(.*)\]$/, '$1'));
    return { host, port, connectionString: `${scheme[1]}://${userinfo}${hostPart}:${port}${path}${query}` };
  });
  return { hosts, targetSessionAttrs: attrs };
}

type ConnectCallback = (error: Error | null) => void;

/**
 * Options for pg.Pool and pg.Client: `connectionString` (the first host's URI) and a `Client` class that,
 * on connect, tries the hosts in order starting with the last one that worked and, for read-write, skips any
 * that is read-only (a standby). Pass both to `new pg.Pool({...})`; build a lone client with `new Client({ connectionString })`.
 */
export function postgresConnection(uri: string): { Client: typeof pg.Client; connectionString: string } {
  const target = parsePostgresHosts(uri);
  const [first] = target.hosts as [PostgresHost, ...PostgresHost[]];
  const connectionString = first.connectionString;
  if (target.hosts.length === 1 && target.targetSessionAttrs === 'any') return { Client: pg.Client, connectionString };

  // Shared by every client of this target (the pool's and the LISTEN client), so after a failover one
  // connect finds the new primary and the rest go straight to it.
  let preferred = first;

  async function isUsable(client: pg.Client): Promise<boolean> {
    if (target.targetSessionAttrs === 'any') return true;
    // libpq's own read-write test: on by default in a hot standby, and on a primary set read-only by hand.
    const result = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
    return result.rows[0]?.transaction_read_only === 'off';
  }

  /** Connects a short-lived client to each host in turn; returns the first usable host. */
  async function findHost(config: pg.ClientConfig): Promise<PostgresHost> {
    const order = [preferred, ...target.hosts.filter((candidate) => candidate !== preferred)];
    const failures: string[] = [];
    for (const candidate of order) {
      const { host, port } = candidate;
      const probe = new pg.Client({ ...config, connectionString: candidate.connectionString });
      probe.on('error', () => {});
      try {
        await probe.connect();
        if (await isUsable(probe)) return candidate;
        failures.push(`${host}:${port} is a standby`);
      } catch (error) {
        failures.push(`${host}:${port}: ${(error as Error).message}`);
      } finally {
        await probe.end().catch(() => {});
      }
    }
    // 08001 (unable to establish a connection): our storage is unavailable, so HTTP answers 503 and workers retry.
    throw Object.assign(new Error(`no ${target.targetSessionAttrs} PostgreSQL host among ${target.hosts.length} (${failures.join('; ')})`), { code: '08001' });
  }

  class FailoverClient extends pg.Client {
    readonly #config: pg.ClientConfig;

    constructor(config?: pg.ClientConfig) {
      super(config);
      this.#config = { ...config };
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      const connected = (async () => {
        const chosen = await findHost(this.#config);
        const { host, port } = chosen;
        // pg reads the socket address from these two fields when it connects.
        this.host = host;
        this.port = port;
        await super.connect();
        // The roles may have swapped between the probe and this connection.
        if (!(await isUsable(this))) {
          await this.end().catch(() => {});
          throw Object.assign(new Error(`PostgreSQL host ${host}:${port} became a standby while connecting`), { code: '08001' });
        }
        preferred = chosen;
        return this as pg.Client;
      })();
      if (!callback) return connected;
      connected.then(
        () => callback(null),
        (error: Error) => callback(error),
      );
    }
  }

  return { Client: FailoverClient, connectionString };
}
