import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.ts';
import { CONNECTION_LIMIT_DEFAULTS } from './http/connection-limits.ts';

const KEY = Buffer.alloc(32, 7).toString('base64');

const problems = (env: Record<string, string>) => {
  try {
    parseConfig(env);
    return [];
  } catch (error) {
    return error instanceof ConfigError ? error.problems : [String(error)];
  }
};

describe('SMS_PROVIDER and identity settings', () => {
  it('defaults to Twilio (demo mode without credentials) and US phone numbers', () => {
    const config = parseConfig({});
    expect(config).toMatchObject({ smsProvider: 'twilio', demo: true, defaultPhoneCountry: 'US' });
    expect(config.telnyx).toBeUndefined();
  });

  it('builds the Telnyx settings, and is not demo mode', () => {
    const config = parseConfig({ SMS_PROVIDER: 'telnyx', TELNYX_API_KEY: 'KEY123', TELNYX_PUBLIC_KEY: KEY, TELNYX_FROM_NUMBER: '+15005550006', DEFAULT_PHONE_COUNTRY: 'GB' });
    expect(config).toMatchObject({ smsProvider: 'telnyx', demo: false, defaultPhoneCountry: 'GB', telnyx: { apiKey: 'KEY123', publicKey: KEY, fromNumber: '+15005550006' } });
  });

  it('lists every missing or malformed Telnyx setting at once', () => {
    expect(problems({ SMS_PROVIDER: 'telnyx' })).toEqual([
      'TELNYX_API_KEY: SMS_PROVIDER=telnyx needs TELNYX_API_KEY (demo mode runs the Twilio fake)',
      'TELNYX_PUBLIC_KEY: SMS_PROVIDER=telnyx needs TELNYX_PUBLIC_KEY (demo mode runs the Twilio fake)',
      'TELNYX_FROM_NUMBER: set TELNYX_FROM_NUMBER or TELNYX_MESSAGING_PROFILE_ID',
    ]);
    const bad = problems({ SMS_PROVIDER: 'vonage', TELNYX_PUBLIC_KEY: Buffer.alloc(16).toString('base64'), DEFAULT_PHONE_COUNTRY: 'usa' });
    expect(bad.map((p) => p.split(':')[0]).sort()).toEqual(['DEFAULT_PHONE_COUNTRY', 'SMS_PROVIDER', 'TELNYX_PUBLIC_KEY']);
  });
});

describe('MEDIA_STORE', () => {
  it('stores recordings on local disk under DATA_DIR by default', () => {
    expect(parseConfig({ DATA_DIR: '/srv/sb' }).calls.media).toEqual({ kind: 'local', dir: '/srv/sb/media' });
    expect(parseConfig({ MEDIA_STORE: 'local', MEDIA_DIR: '/mnt/media' }).calls.media).toEqual({ kind: 'local', dir: '/mnt/media' });
  });

  it('builds the S3 store from S3_*, with the SDK credential chain when no keys are given', () => {
    expect(parseConfig({ MEDIA_STORE: 's3', S3_BUCKET: 'care-recordings' }).calls.media).toEqual({
      kind: 's3',
      bucket: 'care-recordings',
      region: 'us-east-1',
      endpoint: undefined,
      forcePathStyle: false,
      prefix: '',
      sse: undefined,
      maxAttempts: 3,
    });
    const minio = parseConfig({
      MEDIA_STORE: 's3',
      S3_BUCKET: 'media',
      S3_REGION: 'eu-central-1',
      S3_ENDPOINT: 'http://127.0.0.1:9000',
      S3_FORCE_PATH_STYLE: 'true',
      S3_ACCESS_KEY_ID: 'minio',
      S3_SECRET_ACCESS_KEY: 'minio-secret',
      S3_PREFIX: 'switchboard/prod',
      S3_SSE: 'aws:kms',
      S3_MAX_ATTEMPTS: '5',
    }).calls.media;
    expect(minio).toEqual({
      kind: 's3',
      bucket: 'media',
      region: 'eu-central-1',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      credentials: { accessKeyId: 'minio', secretAccessKey: 'minio-secret' },
      prefix: 'switchboard/prod/',
      sse: 'aws:kms',
      maxAttempts: 5,
    });
  });

  it('refuses to start with MEDIA_STORE=s3 and no bucket, half a key pair, a bad prefix, SSE or store', () => {
    expect(problems({ MEDIA_STORE: 's3' })).toEqual(['S3_BUCKET: MEDIA_STORE=s3 needs S3_BUCKET']);
    expect(problems({ MEDIA_STORE: 's3', S3_BUCKET: 'bkt', S3_ACCESS_KEY_ID: 'AKID' })).toEqual([
      'S3_SECRET_ACCESS_KEY: set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (the AWS SDK default credential chain)',
    ]);
    expect(problems({ S3_BUCKET: 'forgotten' })).toEqual(['MEDIA_STORE: S3_BUCKET is set but MEDIA_STORE is local: set MEDIA_STORE=s3, or unset S3_BUCKET']);
    const bad = problems({ MEDIA_STORE: 'gcs', S3_PREFIX: '/abs', S3_SSE: 'rot13', S3_BUCKET: 'a/b', S3_MAX_ATTEMPTS: '0' });
    expect(bad.map((p) => p.split(':')[0]).sort()).toEqual(['MEDIA_STORE', 'S3_BUCKET', 'S3_MAX_ATTEMPTS', 'S3_PREFIX', 'S3_SSE']);
  });
});

describe('connection limits', () => {
  it('defaults to the documented caps, which are the app defaults', () => {
    expect(parseConfig({}).connectionLimits).toEqual(CONNECTION_LIMIT_DEFAULTS);
  });

  it('reads every cap from the environment and refuses nonsense', () => {
    const env = { LIVE_STREAMS_PER_COORDINATOR: '2', LIVE_STREAMS_PER_PROCESS: '30', WEBCHAT_STREAMS_PER_PATIENT: '1', WEBCHAT_STREAMS_PER_PROCESS: '40', VISIT_SOCKETS_PER_PROCESS: '50', VISIT_HELLO_TIMEOUT_MS: '2500' };
    expect(parseConfig(env).connectionLimits).toEqual({ liveStreamsPerCoordinator: 2, liveStreamsPerProcess: 30, webchatStreamsPerPatient: 1, webchatStreamsPerProcess: 40, visitSocketsPerProcess: 50, visitHelloTimeoutMs: 2500 });
    const bad = problems({ LIVE_STREAMS_PER_COORDINATOR: '0', WEBCHAT_STREAMS_PER_PROCESS: 'many', VISIT_HELLO_TIMEOUT_MS: '-1' });
    expect(bad.map((p) => p.split(':')[0]).sort()).toEqual(['LIVE_STREAMS_PER_COORDINATOR', 'VISIT_HELLO_TIMEOUT_MS', 'WEBCHAT_STREAMS_PER_PROCESS']);
  });
});

describe('TRUSTED_PROXIES', () => {
  it('reads IPs and CIDRs, defaults to none, and refuses malformed entries and the old TRUST_PROXY', () => {
    expect(parseConfig({}).trustedProxies).toEqual([]);
    // (Web chat links: short-lived by default.)
    expect(parseConfig({}).webchat.linkTtlMs).toBe(24 * 3_600_000);
    expect(parseConfig({ TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.5,::1' }).trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.5', '::1']);
    expect(problems({ TRUSTED_PROXIES: '10.0.0.0/33,proxy.local' })[0]).toMatch(/^TRUSTED_PROXIES/);
    expect(problems({ TRUST_PROXY: '1' })[0]).toMatch(/^TRUST_PROXY: .*TRUSTED_PROXIES/);
  });
});
