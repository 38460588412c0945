import { describe, expect, it } from 'vitest';
import {
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  credentialScope,
  decodeAwsChunked,
  EMPTY_SHA256,
  sha256Hex,
  signingKey,
  signString,
  stringToSign,
  verifySigV4,
} from './sigv4.ts';

// AWS's published examples for S3 header-based SigV4 (example credentials, 2013-05-24, us-east-1, bucket examplebucket):
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html#example-signature-calculations
const ACCESS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const AMZ_DATE = '20130524T000000Z';
const HOST = 'examplebucket.s3.amazonaws.com';
const SCOPE = credentialScope('20130524', 'us-east-1', 's3');
const AT_MS = Date.UTC(2013, 4, 24);

function sign(args: { method: string; path: string; query?: string; headers: Array<[string, string]>; payloadHash: string }) {
  const signedHeaders = args.headers.map(([name]) => name.toLowerCase()).sort();
  const canonical = canonicalRequest({ method: args.method, path: args.path, query: args.query ?? '', headers: args.headers, signedHeaders, payloadHash: args.payloadHash })!;
  const toSign = stringToSign(AMZ_DATE, SCOPE, canonical);
  return { canonical, toSign, signature: signString(signingKey(SECRET, '20130524', 'us-east-1', 's3'), toSign), signedHeaders };
}

const getObjectHeaders: Array<[string, string]> = [
  ['Host', HOST],
  ['Range', 'bytes=0-9'],
  ['x-amz-content-sha256', EMPTY_SHA256],
  ['x-amz-date', AMZ_DATE],
];

describe('SigV4 against AWS’s published S3 examples', () => {
  it('GET Object with a Range header', () => {
    const { signature } = sign({ method: 'GET', path: '/test.txt', headers: getObjectHeaders, payloadHash: EMPTY_SHA256 });
    expect(signature).toBe('f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41');
  });

  it('PUT Object: canonical request, string to sign and signature, with `$` encoded in the path', () => {
    const body = 'Welcome to Amazon S3.';
    const payloadHash = sha256Hex(body);
    expect(payloadHash).toBe('44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072');
    const { canonical, toSign, signature } = sign({
      method: 'PUT',
      path: '/test$file.text',
      headers: [
        ['Date', 'Fri, 24 May 2013 00:00:00 GMT'],
        ['Host', HOST],
        ['x-amz-content-sha256', payloadHash],
        ['x-amz-date', AMZ_DATE],
        ['x-amz-storage-class', 'REDUCED_REDUNDANCY'],
      ],
      payloadHash,
    });
    expect(canonical).toBe(
      [
        'PUT',
        '/test%24file.text',
        '',
        'date:Fri, 24 May 2013 00:00:00 GMT',
        `host:${HOST}`,
        `x-amz-content-sha256:${payloadHash}`,
        `x-amz-date:${AMZ_DATE}`,
        'x-amz-storage-class:REDUCED_REDUNDANCY',
        '',
        'date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class',
        payloadHash,
      ].join('\n'),
    );
    expect(toSign).toBe(['AWS4-HMAC-SHA256', AMZ_DATE, SCOPE, '9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d'].join('\n'));
    expect(signature).toBe('98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd');
  });

  it('GET Bucket (list objects) with query parameters', () => {
    const { signature } = sign({
      method: 'GET',
      path: '/',
      query: 'max-keys=2&prefix=J',
      headers: [
        ['Host', HOST],
        ['x-amz-content-sha256', EMPTY_SHA256],
        ['x-amz-date', AMZ_DATE],
      ],
      payloadHash: EMPTY_SHA256,
    });
    expect(signature).toBe('34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7');
  });
});

describe('canonical forms', () => {
  it('encodes the path once, keeping slashes, and sorts and encodes the query', () => {
    expect(canonicalUri('/media/recordings/a%20b!.wav')).toBe('/media/recordings/a%20b%21.wav');
    expect(canonicalUri('/media/k%24y')).toBe(canonicalUri('/media/k$y'));
    expect(canonicalQuery('uploads')).toBe('uploads=');
    expect(canonicalQuery('x-id=PutObject&partNumber=2&uploadId=a%2Fb+c')).toBe('partNumber=2&uploadId=a%2Fb%2Bc&x-id=PutObject');
    expect(canonicalQuery('b=2&a=z&a=y')).toBe('a=y&a=z&b=2');
  });
});

describe('verifySigV4', () => {
  const signedGet = () => {
    const { signature } = sign({ method: 'GET', path: '/test.txt', headers: getObjectHeaders, payloadHash: EMPTY_SHA256 });
    return [...getObjectHeaders, ['Authorization', `AWS4-HMAC-SHA256 Credential=${ACCESS_KEY}/${SCOPE}, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=${signature}`]] as Array<[string, string]>;
  };
  const verify = (headers: Array<[string, string]>, overrides: { secret?: string; nowMs?: number; region?: string; path?: string } = {}) =>
    verifySigV4({
      method: 'GET',
      path: overrides.path ?? '/test.txt',
      query: '',
      headers,
      secretFor: (id) => (id === ACCESS_KEY ? (overrides.secret ?? SECRET) : undefined),
      region: overrides.region ?? 'us-east-1',
      nowMs: overrides.nowMs ?? AT_MS,
    });

  it('accepts the published request and refuses it when anything signed changes', () => {
    expect(verify(signedGet())).toMatchObject({ ok: true, accessKeyId: ACCESS_KEY, payloadHash: EMPTY_SHA256 });
    expect(verify(signedGet(), { secret: SECRET.replace('K', 'k') })).toMatchObject({ ok: false, status: 403, code: 'SignatureDoesNotMatch' });
    expect(verify(signedGet(), { path: '/test2.txt' })).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
    const tampered = signedGet().map(([n, v]): [string, string] => (n === 'Range' ? [n, 'bytes=0-99'] : [n, v]));
    expect(verify(tampered)).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' });
  });

  it('names S3’s errors for an unknown key, a wrong region, a stale date, an unsigned x-amz header and no signature', () => {
    const headers = signedGet();
    const withKey = headers.map(([n, v]): [string, string] => (n === 'Authorization' ? [n, v.replace(ACCESS_KEY, 'AKIDUNKNOWN')] : [n, v]));
    expect(verify(withKey)).toMatchObject({ ok: false, status: 403, code: 'InvalidAccessKeyId' });
    expect(verify(headers, { region: 'eu-west-1' })).toMatchObject({ ok: false, status: 400, code: 'AuthorizationHeaderMalformed' });
    expect(verify(headers, { nowMs: AT_MS + 16 * 60_000 })).toMatchObject({ ok: false, status: 403, code: 'RequestTimeTooSkewed' });
    expect(verify([...headers, ['x-amz-meta-owner', 'mallory']])).toMatchObject({ ok: false, status: 403, code: 'AccessDenied' });
    expect(verify(getObjectHeaders)).toMatchObject({ ok: false, status: 403, code: 'AccessDenied' });
  });
});

describe('aws-chunked bodies', () => {
  it('decodes unsigned chunks and their trailers', () => {
    const body = Buffer.from('6\r\nhello \r\n5\r\nworld\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n', 'latin1');
    const { data, trailers } = decodeAwsChunked(body);
    expect(data.toString()).toBe('hello world');
    expect(Object.fromEntries(trailers)).toEqual({ 'x-amz-checksum-crc32': 'DUoRhQ==' });
  });

  it('refuses truncated, malformed and signed-chunk bodies', () => {
    expect(() => decodeAwsChunked(Buffer.from('6\r\nhel'))).toThrow(/shorter/);
    expect(() => decodeAwsChunked(Buffer.from('zz\r\n'))).toThrow(/size line/);
    expect(() => decodeAwsChunked(Buffer.from(`5;chunk-signature=${'0'.repeat(64)}\r\nhello\r\n0\r\n\r\n`))).toThrow(/signed/);
  });
});
