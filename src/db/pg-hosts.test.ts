import { describe, expect, it } from 'vitest';
import { parsePostgresHosts, PostgresUriError } from './pg-hosts.ts';

describe('parsePostgresHosts', () => {
  it('splits the URI pg_autoctl prints into one URI per host that pg can read', () => {
    const parsed = parsePostgresHosts('postgres://127.0.0.1:6001,127.0.0.1:6002/switchboard?target_session_attrs=read-write&sslmode=disable');
    expect(parsed).toEqual({
      targetSessionAttrs: 'read-write',
      hosts: [
        { host: '127.0.0.1', port: 6001, connectionString: 'postgres://127.0.0.1:6001/switchboard?sslmode=disable' },
        { host: '127.0.0.1', port: 6002, connectionString: 'postgres://127.0.0.1:6002/switchboard?sslmode=disable' },
      ],
    });
  });

  it('keeps credentials, path and the other parameters on every host; a host without a port gets 5432', () => {
    const parsed = parsePostgresHosts('postgresql://app:s%40cret@db-a.internal,db-b.internal:5433/inbox?application_name=x&target_session_attrs=any');
    expect(parsed.targetSessionAttrs).toBe('any');
    expect(parsed.hosts.map((h) => [h.host, h.port, h.connectionString])).toEqual([
      ['db-a.internal', 5432, 'postgresql://app:s%40cret@db-a.internal:5432/inbox?application_name=x'],
      ['db-b.internal', 5433, 'postgresql://app:s%40cret@db-b.internal:5433/inbox?application_name=x'],
    ]);
  });

  it('reads bracketed IPv6 hosts and a URI without path or query', () => {
    const parsed = parsePostgresHosts('postgres://u@[::1]:7000,[fe80::2]');
    expect(parsed.targetSessionAttrs).toBe('any');
    expect(parsed.hosts).toEqual([
      { host: '::1', port: 7000, connectionString: 'postgres://u@[::1]:7000' },
      { host: 'fe80::2', port: 5432, connectionString: 'postgres://u@[fe80::2]:5432' },
    ]);
  });

  it('leaves a single-host URL as it was, apart from an explicit port', () => {
    expect(parsePostgresHosts('postgres://postgres@127.0.0.1:5432/test').hosts).toEqual([
      { host: '127.0.0.1', port: 5432, connectionString: 'postgres://postgres@127.0.0.1:5432/test' },
    ]);
  });

  it.each([
    ['mysql://h/db', /starts with postgres/],
    ['postgres:///db', /names no host/],
    ['postgres://a:1,/db', /cannot read host ""/],
    ['postgres://a:99999/db', /out of range/],
    ['postgres://a:1,b:2/db?target_session_attrs=standby', /target_session_attrs=standby is not supported/],
  ])('rejects %s with a clear message', (uri, message) => {
    expect(() => parsePostgresHosts(uri)).toThrow(PostgresUriError);
    expect(() => parsePostgresHosts(uri)).toThrow(message);
  });

  it('never puts the password in an error message', () => {
    expect(() => parsePostgresHosts('postgres://u:hunter2@a:1,b:notaport/db')).toThrow(/cannot read host "b:notaport"/);
    try {
      parsePostgresHosts('postgres://u:hunter2@a:1,b:notaport/db');
    } catch (error) {
      expect(String(error)).not.toContain('hunter2');
    }
  });
});
