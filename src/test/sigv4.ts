import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * AWS Signature Version 4, server side, for the loopback fake S3 (src/test/fake-s3.ts). Written here from the
 * spec rather than taken from @smithy/signature-v4 on purpose: the fake must check what the SDK's signer produced,
 * and a checker that reuses the signer would agree with any bug in it. Spec and the test vectors in sigv4.test.ts:
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html (S3 flavour: the path is URI-encoded
 * once, not normalised) and https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
 */

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
export const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

export const sha256Hex = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Uint8Array | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** RFC 3986 unreserved characters stay; every other byte of the UTF-8 form becomes %XX (upper-case hex). */
export function uriEncode(value: string, keepSlash: boolean): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Percent-decoding only: in a query string on the wire '+' is a plus sign, as the SDK encodes a space as %20. */
function percentDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The path as sent, decoded and encoded again once, so `/test$file.text` and `/test%24file.text` agree. */
export function canonicalUri(rawPath: string): string {
  if (rawPath === '') return '/';
  return rawPath
    .split('/')
    .map((segment) => uriEncode(percentDecode(segment), false))
    .join('/');
}

/** Every parameter (a bare `uploads` counts as `uploads=`), name and value encoded, sorted by name then value. */
export function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  return rawQuery
    .split('&')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      const value = eq === -1 ? '' : pair.slice(eq + 1);
      return [uriEncode(percentDecode(name), false), uriEncode(percentDecode(value), false)] as const;
    })
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** Header pairs as they arrived (Node's `rawHeaders` flattened list works too), names in any case. */
export type HeaderPairs = ReadonlyArray<readonly [name: string, value: string]>;

export function headerPairs(rawHeaders: readonly string[]): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  return pairs;
}

/** `name:value\n` for each signed header, lower-case names; repeated headers joined by ','; values trimmed, runs of spaces collapsed. */
export function canonicalHeaders(headers: HeaderPairs, signedHeaders: readonly string[]): string | undefined {
  const byName = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    byName.set(key, [...(byName.get(key) ?? []), value.trim().replace(/\s+/g, ' ')]);
  }
  let out = '';
  for (const name of signedHeaders) {
    const values = byName.get(name);
    if (!values) return undefined;
    out += `${name}:${values.join(',')}\n`;
  }
  return out;
}

export interface CanonicalRequestInput {
  method: string;
  /** The path as on the wire, percent-encoded or not. */
  path: string;
  /** The query string as on the wire, without '?'. */
  query: string;
  headers: HeaderPairs;
  /** Lower-case, sorted, as named in SignedHeaders. */
  signedHeaders: readonly string[];
  /** x-amz-content-sha256 as sent: a hex digest, UNSIGNED-PAYLOAD or a STREAMING-… marker. */
  payloadHash: string;
}

export function canonicalRequest(input: CanonicalRequestInput): string | undefined {
  const headers = canonicalHeaders(input.headers, input.signedHeaders);
  if (headers === undefined) return undefined;
  return [input.method.toUpperCase(), canonicalUri(input.path), canonicalQuery(input.query), headers, input.signedHeaders.join(';'), input.payloadHash].join('\n');
}

export const credentialScope = (date: string, region: string, service: string): string => `${date}/${region}/${service}/aws4_request`;

export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(canonical)].join('\n');
}

/** kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"). */
export function signingKey(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), 'aws4_request');
}

export const signString = (key: Uint8Array, text: string): string => createHmac('sha256', key).update(text, 'utf8').digest('hex');

export interface ParsedAuthorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

/** `AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex`; undefined if malformed. */
export function parseAuthorization(header: string): ParsedAuthorization | undefined {
  if (!header.startsWith(`${SIGV4_ALGORITHM} `)) return undefined;
  const fields = new Map<string, string>();
  for (const part of header.slice(SIGV4_ALGORITHM.length + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq === -1) return undefined;
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential')?.split('/');
  const signedHeaders = fields.get('SignedHeaders')?.split(';');
  const signature = fields.get('Signature');
  if (!credential || credential.length !== 5 || credential[4] !== 'aws4_request' || !signedHeaders || !signature || !/^[0-9a-f]{64}$/.test(signature)) return undefined;
  const [accessKeyId, date, region, service] = credential as [string, string, string, string];
  if (!/^\d{8}$/.test(date)) return undefined;
  return { accessKeyId, date, region, service, signedHeaders, signature };
}

export type SigV4Failure = { ok: false; status: number; code: string; message: string };
export type SigV4Result = { ok: true; accessKeyId: string; payloadHash: string; signingKey: Buffer; scope: string; amzDate: string; signature: string } | SigV4Failure;

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
/** S3 refuses a request dated more than 15 minutes from its clock. */
const MAX_SKEW_MS = 15 * 60_000;

/**
 * Checks a header-signed request the way S3 does, in S3's order and with its error codes: a well-formed
 * Authorization header, a known access key, the region and service of the scope, x-amz-date near our clock and on
 * the scope's day, x-amz-content-sha256 present and signed, every x-amz-* header signed, then the signature itself.
 * The payload hash is only as good as the body behind it: the caller compares it with the bytes that arrive.
 */
export function verifySigV4(args: {
  method: string;
  path: string;
  query: string;
  headers: HeaderPairs;
  secretFor: (accessKeyId: string) => string | undefined;
  region: string;
  service?: string;
  nowMs: number;
}): SigV4Result {
  const service = args.service ?? 's3';
  const fail = (status: number, code: string, message: string): SigV4Failure => ({ ok: false, status, code, message });
  const header = (name: string) => args.headers.find(([n]) => n.toLowerCase() === name)?.[1];
  const authorization = header('authorization');
  if (!authorization) return fail(403, 'AccessDenied', 'Access Denied (no Authorization header; anonymous requests are not allowed)');
  const parsed = parseAuthorization(authorization);
  if (!parsed) return fail(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
  const secret = args.secretFor(parsed.accessKeyId);
  if (secret === undefined) return fail(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  if (parsed.region !== args.region) return fail(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region '${parsed.region}' is wrong; expecting '${args.region}'`);
  if (parsed.service !== service) return fail(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; incorrect service "${parsed.service}". This endpoint belongs to "${service}".`);
  const amzDate = header('x-amz-date');
  const match = amzDate ? AMZ_DATE.exec(amzDate) : null;
  if (!amzDate || !match) return fail(403, 'AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  const [, y, mo, d, h, mi, s] = match.map(Number) as [number, number, number, number, number, number, number];
  const signedAtMs = Date.UTC(y, mo - 1, d, h, mi, s);
  if (Math.abs(args.nowMs - signedAtMs) > MAX_SKEW_MS) return fail(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
  if (amzDate.slice(0, 8) !== parsed.date) return fail(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; Invalid credential date. Date is not the same as X-Amz-Date: "${parsed.date}".`);
  const payloadHash = header('x-amz-content-sha256');
  if (!payloadHash) return fail(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  if (!/^[0-9a-f]{64}$/.test(payloadHash) && !PAYLOAD_MARKERS.has(payloadHash)) return fail(400, 'InvalidArgument', `x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-… or a SHA-256 hex digest`);
  const sorted = [...parsed.signedHeaders].sort();
  if (sorted.join(';') !== parsed.signedHeaders.join(';') || !parsed.signedHeaders.includes('host')) {
    return fail(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; SignedHeaders must be sorted and include host.');
  }
  const unsigned = args.headers.map(([n]) => n.toLowerCase()).filter((n) => n.startsWith('x-amz-') && !parsed.signedHeaders.includes(n));
  if (unsigned.length > 0) return fail(403, 'AccessDenied', `There were headers present in the request which were not signed: ${[...new Set(unsigned)].join(', ')}`);

  const canonical = canonicalRequest({ method: args.method, path: args.path, query: args.query, headers: args.headers, signedHeaders: parsed.signedHeaders, payloadHash });
  const scope = credentialScope(parsed.date, parsed.region, parsed.service);
  const key = signingKey(secret, parsed.date, parsed.region, parsed.service);
  const expected = canonical === undefined ? undefined : signString(key, stringToSign(amzDate, scope, canonical));
  if (expected === undefined || !timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(parsed.signature, 'hex'))) {
    return fail(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  }
  return { ok: true, accessKeyId: parsed.accessKeyId, payloadHash, signingKey: key, scope, amzDate, signature: parsed.signature };
}

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
export const STREAMING_UNSIGNED_PAYLOAD_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER';
/** Markers S3 accepts in x-amz-content-sha256 besides a digest; the signed-chunk ones are recognised so they can be refused by name. */
export const PAYLOAD_MARKERS = new Set([
  UNSIGNED_PAYLOAD,
  STREAMING_UNSIGNED_PAYLOAD_TRAILER,
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
  'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD',
  'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER',
]);

export class AwsChunkedError extends Error {}

/**
 * Decodes an `aws-chunked` body with unsigned chunks: `hex-size[;ext]\r\n bytes \r\n` … `0\r\n`, then trailer
 * lines `name:value\r\n` and a final `\r\n` (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html).
 * A chunk carrying a `chunk-signature` extension belongs to the signed variant, which this fake does not accept.
 */
export function decodeAwsChunked(body: Buffer): { data: Buffer; trailers: Map<string, string> } {
  const parts: Buffer[] = [];
  let at = 0;
  const line = (): string => {
    const end = body.indexOf('\r\n', at);
    if (end === -1) throw new AwsChunkedError('aws-chunked body ends inside a line');
    const text = body.subarray(at, end).toString('latin1');
    at = end + 2;
    return text;
  };
  for (;;) {
    const header = line();
    const [sizeText, ...extensions] = header.split(';');
    if (!sizeText || !/^[0-9a-fA-F]+$/.test(sizeText)) throw new AwsChunkedError(`bad aws-chunked size line ${JSON.stringify(header)}`);
    if (extensions.some((e) => e.startsWith('chunk-signature='))) throw new AwsChunkedError('signed aws-chunked payloads are not supported by this fake');
    const size = parseInt(sizeText, 16);
    if (size === 0) break;
    if (at + size + 2 > body.length) throw new AwsChunkedError('aws-chunked body is shorter than its chunk sizes say');
    parts.push(body.subarray(at, at + size));
    at += size;
    if (body.subarray(at, at + 2).toString('latin1') !== '\r\n') throw new AwsChunkedError('aws-chunked chunk is not followed by CRLF');
    at += 2;
  }
  const trailers = new Map<string, string>();
  for (;;) {
    if (at >= body.length) break;
    const text = line();
    if (text === '') break;
    const colon = text.indexOf(':');
    if (colon === -1) throw new AwsChunkedError(`bad aws-chunked trailer ${JSON.stringify(text)}`);
    trailers.set(text.slice(0, colon).trim().toLowerCase(), text.slice(colon + 1).trim());
  }
  if (at !== body.length) throw new AwsChunkedError('bytes after the aws-chunked trailers');
  return { data: Buffer.concat(parts), trailers };
}
