import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import rangeParser from 'range-parser';
import { z } from 'zod';
import { AwsChunkedError, decodeAwsChunked, headerPairs, sha256Hex, STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD, verifySigV4 } from './sigv4.ts';

/**
 * A loopback fake of the S3 REST API, path-style (`/bucket/key`), as @aws-sdk/client-s3 and lib-storage use it:
 * PutObject, GetObject (Range → 206 + Content-Range, 416 InvalidRange), HeadObject, DeleteObject, the multipart
 * calls (Create, UploadPart, Complete, Abort, ListMultipartUploads), ListObjectsV2 and HeadBucket. It is a real HTTP
 * server on 127.0.0.1 and checks every request as S3 does:
 * - AWS Signature Version 4 on the Authorization header (src/test/sigv4.ts, written from the spec, not the SDK's
 *   signer), with S3's error codes: SignatureDoesNotMatch, InvalidAccessKeyId, RequestTimeTooSkewed, …;
 * - the body against x-amz-content-sha256: a hex digest must match the bytes (XAmzContentSHA256Mismatch);
 *   UNSIGNED-PAYLOAD is taken as is; STREAMING-UNSIGNED-PAYLOAD-TRAILER must come `Content-Encoding: aws-chunked`,
 *   is decoded, and its length checked against x-amz-decoded-content-length (signed chunks are refused: the SDK
 *   for JavaScript does not send them);
 * - the flexible checksums the SDK adds (x-amz-checksum-crc32 / -sha1 / -sha256, in a header or an aws-chunked
 *   trailer) and Content-MD5, against the decoded bytes (BadDigest).
 * Errors are S3's XML (`<Error><Code>NoSuchKey</Code>…`); a HEAD error has no body, as on S3.
 *
 * Control API (JSON, no auth; S3 bucket names cannot start with '_', so it cannot clash):
 *   POST /_fake/faults {kind, status?, ms?, count?, operation?} · DELETE /_fake/faults
 *   GET /_fake/objects · GET /_fake/uploads · GET /_fake/requests · POST /_fake/buckets {name}
 */

export type S3Operation =
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'HeadBucket'
  | 'Unsupported';

/**
 * A fault for the next `count` (default 1) requests of `operation` (default: any), applied after a request is
 * authenticated, so a badly signed request does not use it up.
 * - `status`: 503 SlowDown or 500 InternalError, nothing stored (the SDK retries both).
 * - `latency`: wait `ms`, then handle the request normally.
 * - `drop`: destroy the connection without doing anything.
 * - `drop-after`: do the operation (store the object, the part…), then destroy the connection unanswered: the
 *   client cannot know it worked, and its retry must be harmless.
 */
export type S3Fault = { kind: 'status'; status: 500 | 503 } | { kind: 'latency'; ms: number } | { kind: 'drop' } | { kind: 'drop-after' };
export type QueuedS3Fault = S3Fault & { count?: number; operation?: S3Operation };

export interface FakeS3Options {
  accessKeyId: string;
  secretAccessKey: string;
  /** default us-east-1 */
  region?: string;
  /** Buckets that exist at start; default ['media']. */
  buckets?: string[];
  host?: string;
  port?: number;
  /** The fake's clock for the 15-minute skew check; default Date.now. */
  now?: () => number;
}

export interface StoredS3Object {
  bucket: string;
  key: string;
  body: Buffer;
  etag: string;
  contentType: string;
  /** x-amz-server-side-encryption as requested: AES256, aws:kms… (the fake stores plain bytes and only echoes it). */
  sse?: string;
  lastModified: Date;
  /** base64 CRC32 of a single-request upload, returned to GetObject with x-amz-checksum-mode: ENABLED. */
  crc32?: string;
  parts?: number;
}

export interface OpenUpload {
  bucket: string;
  key: string;
  uploadId: string;
  partNumbers: number[];
  initiated: Date;
}

/** One request as it crossed the wire, and what the fake answered. */
export interface FakeS3Request {
  operation: S3Operation;
  method: string;
  bucket?: string;
  key?: string;
  status: number;
  /** the S3 error code answered, if any */
  error?: string;
  /** x-amz-content-sha256 as sent: a digest, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER */
  contentSha256?: string;
  contentEncoding?: string;
  /** the checksum algorithms the request carried and the fake verified, e.g. ['crc32'] */
  checksums: string[];
  fault?: S3Fault['kind'];
}

export interface FakeS3 {
  readonly url: string;
  readonly region: string;
  readonly requests: FakeS3Request[];
  enqueueFault(fault: QueuedS3Fault): void;
  clearFaults(): void;
  createBucket(name: string): void;
  object(bucket: string, key: string): StoredS3Object | undefined;
  objects(bucket?: string): StoredS3Object[];
  openUploads(bucket?: string): OpenUpload[];
  close(): Promise<void>;
}

const MAX_REQUEST_BYTES = 64 * 1024 * 1024;
const MIN_PART_BYTES = 5 * 1024 * 1024;
const MAX_PART_NUMBER = 10_000;
const SSE_VALUES = new Set(['AES256', 'aws:kms', 'aws:kms:dsse']);

const xml = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_' });
const xmlParser = new XMLParser({ isArray: (name) => name === 'Part', parseTagValue: false });
const S3_NS = 'http://s3.amazonaws.com/doc/2006-03-01/';
const xmlDocument = (body: Record<string, unknown>) => xml.build({ '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' }, ...body });

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest();
const crc32Base64 = (data: Uint8Array) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(data) >>> 0);
  return out.toString('base64');
};

const faultSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('status'), status: z.union([z.literal(500), z.literal(503)]), count: z.number().int().min(1).optional(), operation: z.string().optional() }),
  z.strictObject({ kind: z.literal('latency'), ms: z.number().min(0), count: z.number().int().min(1).optional(), operation: z.string().optional() }),
  z.strictObject({ kind: z.literal('drop'), count: z.number().int().min(1).optional(), operation: z.string().optional() }),
  z.strictObject({ kind: z.literal('drop-after'), count: z.number().int().min(1).optional(), operation: z.string().optional() }),
]);
const bucketSchema = z.strictObject({ name: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name') });

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, string | number> = {},
  ) {
    super(message);
  }
}

interface Upload extends OpenUpload {
  contentType: string;
  sse?: string;
  parts: Map<number, { body: Buffer; etag: string }>;
}

export async function startFakeS3(options: FakeS3Options): Promise<FakeS3> {
  const region = options.region ?? 'us-east-1';
  const now = options.now ?? Date.now;
  const buckets = new Map<string, Map<string, StoredS3Object>>();
  for (const name of options.buckets ?? ['media']) buckets.set(name, new Map());
  const uploads = new Map<string, Upload>();
  const requests: FakeS3Request[] = [];
  let faults: Array<S3Fault & { remaining: number; operation?: string }> = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
  }

  function takeFault(operation: S3Operation): S3Fault | undefined {
    const index = faults.findIndex((f) => f.operation === undefined || f.operation === operation);
    if (index === -1) return undefined;
    const queued = faults[index]!;
    queued.remaining -= 1;
    if (queued.remaining <= 0) faults.splice(index, 1);
    const { remaining: _remaining, operation: _operation, ...fault } = queued;
    return fault as S3Fault;
  }

  const requestId = () => randomBytes(8).toString('hex').toUpperCase();
  // The fake's own clock: the SDK corrects its clock skew from an error's Date header, as it does against S3.
  const httpDate = () => new Date(now()).toUTCString();

  function sendError(req: IncomingMessage, res: ServerResponse, error: S3Error, resource: string): void {
    if (res.headersSent || res.destroyed) return;
    const id = requestId();
    const headers = { 'x-amz-request-id': id, 'x-amz-id-2': randomBytes(24).toString('base64'), date: httpDate() };
    if (req.method === 'HEAD') {
      res.writeHead(error.status, headers);
      res.end();
      return;
    }
    res.writeHead(error.status, { ...headers, 'content-type': 'application/xml' });
    res.end(xmlDocument({ Error: { Code: error.code, Message: error.message, ...error.extra, Resource: resource, RequestId: id, HostId: headers['x-amz-id-2'] } }));
  }

  function bucketOf(name: string): Map<string, StoredS3Object> {
    const bucket = buckets.get(name);
    if (!bucket) throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: name });
    return bucket;
  }

  function operationOf(method: string, key: string | undefined, query: URLSearchParams, headers: IncomingMessage['headers']): S3Operation {
    if (key === undefined) {
      if (method === 'GET' && query.get('list-type') === '2') return 'ListObjectsV2';
      if (method === 'GET' && query.has('uploads')) return 'ListMultipartUploads';
      if (method === 'HEAD') return 'HeadBucket';
      return 'Unsupported';
    }
    switch (method) {
      case 'PUT':
        if (headers['x-amz-copy-source']) return 'Unsupported';
        return query.has('uploadId') || query.has('partNumber') ? 'UploadPart' : 'PutObject';
      case 'GET':
        return 'GetObject';
      case 'HEAD':
        return 'HeadObject';
      case 'DELETE':
        return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
      case 'POST':
        if (query.has('uploads')) return 'CreateMultipartUpload';
        if (query.has('uploadId')) return 'CompleteMultipartUpload';
        return 'Unsupported';
      default:
        return 'Unsupported';
    }
  }

  /** The bytes the client meant, after aws-chunked decoding, checked against the signed hash and any checksums. */
  function payloadOf(req: IncomingMessage, raw: Buffer, contentSha256: string, checksums: string[]): Buffer {
    let data = raw;
    let trailers = new Map<string, string>();
    const encodings = (req.headers['content-encoding'] ?? '').split(',').map((e) => e.trim()).filter(Boolean);
    if (contentSha256 === STREAMING_UNSIGNED_PAYLOAD_TRAILER) {
      if (!encodings.includes('aws-chunked')) throw new S3Error(400, 'InvalidArgument', 'STREAMING-UNSIGNED-PAYLOAD-TRAILER needs Content-Encoding: aws-chunked');
      try {
        ({ data, trailers } = decodeAwsChunked(raw));
      } catch (error) {
        if (error instanceof AwsChunkedError) throw new S3Error(400, 'IncompleteBody', error.message);
        throw error;
      }
      const declared = req.headers['x-amz-decoded-content-length'];
      if (declared === undefined || Number(declared) !== data.length) {
        throw new S3Error(400, 'IncompleteBody', `You did not provide the number of bytes specified by the x-amz-decoded-content-length header (${String(declared)} declared, ${data.length} sent)`);
      }
      for (const name of (String(req.headers['x-amz-trailer'] ?? '')).split(',').map((t) => t.trim().toLowerCase()).filter(Boolean)) {
        if (!trailers.has(name)) throw new S3Error(400, 'MalformedTrailerError', `The request contained trailing data that was not well-formed: ${name} is missing`);
      }
    } else if (contentSha256.startsWith('STREAMING-')) {
      throw new S3Error(501, 'NotImplemented', `the fake S3 does not accept ${contentSha256} (signed chunks)`);
    } else if (contentSha256 !== UNSIGNED_PAYLOAD && sha256Hex(raw) !== contentSha256) {
      throw new S3Error(400, 'XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match what was computed.');
    } else if (encodings.includes('aws-chunked')) {
      throw new S3Error(400, 'InvalidArgument', 'Content-Encoding: aws-chunked needs a STREAMING-… x-amz-content-sha256');
    }
    const claimed = (name: string) => trailers.get(name) ?? (req.headers[name] as string | undefined);
    const digests: Record<string, (d: Buffer) => string> = {
      'x-amz-checksum-crc32': crc32Base64,
      'x-amz-checksum-sha1': (d) => createHash('sha1').update(d).digest('base64'),
      'x-amz-checksum-sha256': (d) => createHash('sha256').update(d).digest('base64'),
    };
    for (const name of ['x-amz-checksum-crc32c', 'x-amz-checksum-crc64nvme']) {
      if (claimed(name) !== undefined) throw new S3Error(501, 'NotImplemented', `the fake S3 does not verify ${name}`);
    }
    for (const [name, digest] of Object.entries(digests)) {
      const value = claimed(name);
      if (value === undefined) continue;
      if (digest(data) !== value) throw new S3Error(400, 'BadDigest', `The ${name.slice('x-amz-checksum-'.length).toUpperCase()} you specified did not match the calculated checksum.`);
      checksums.push(name.slice('x-amz-checksum-'.length));
    }
    const contentMd5 = req.headers['content-md5'];
    if (contentMd5 !== undefined) {
      if (md5(data).toString('base64') !== contentMd5) throw new S3Error(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
      checksums.push('md5');
    }
    return data;
  }

  function sseOf(req: IncomingMessage): string | undefined {
    const sse = req.headers['x-amz-server-side-encryption'] as string | undefined;
    if (sse !== undefined && !SSE_VALUES.has(sse)) throw new S3Error(400, 'InvalidArgument', `Invalid value for x-amz-server-side-encryption: ${sse}`);
    return sse;
  }

  /** Whether the client sent a CRC32 (header or aws-chunked trailer); S3 keeps and returns only checksums it was given. */
  const hasCrc32 = (req: IncomingMessage) => req.headers['x-amz-checksum-crc32'] !== undefined || String(req.headers['x-amz-trailer'] ?? '').toLowerCase().includes('x-amz-checksum-crc32');
  const sseHeaders = (sse: string | undefined): Record<string, string> => (sse ? { 'x-amz-server-side-encryption': sse } : {});
  const objectHeaders = (object: StoredS3Object): Record<string, string> => ({
    etag: object.etag,
    'last-modified': object.lastModified.toUTCString(),
    'content-type': object.contentType,
    'accept-ranges': 'bytes',
    ...sseHeaders(object.sse),
  });

  function uploadOf(query: URLSearchParams, bucket: string, key: string): Upload {
    const upload = uploads.get(query.get('uploadId') ?? '');
    if (!upload || upload.bucket !== bucket || upload.key !== key) {
      throw new S3Error(404, 'NoSuchUpload', 'The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.', { UploadId: query.get('uploadId') ?? '' });
    }
    return upload;
  }

  /** Runs one authenticated operation; `answer` sends the response, so a drop-after fault can skip it. */
  function perform(operation: S3Operation, req: IncomingMessage, bucketName: string, key: string | undefined, query: URLSearchParams, body: () => Buffer): (res: ServerResponse) => void {
    const reply = (status: number, headers: Record<string, string> = {}, text?: string | Buffer) => (res: ServerResponse) => {
      res.writeHead(status, { 'x-amz-request-id': requestId(), date: httpDate(), ...headers, ...(text === undefined ? { 'content-length': '0' } : {}) });
      res.end(text);
    };
    const bucket = bucketOf(bucketName);
    switch (operation) {
      case 'HeadBucket':
        return reply(200, { 'x-amz-bucket-region': region });
      case 'PutObject': {
        const data = body();
        const sse = sseOf(req);
        const crc32 = hasCrc32(req) ? crc32Base64(data) : undefined;
        const object: StoredS3Object = {
          bucket: bucketName,
          key: key!,
          body: data,
          etag: `"${md5(data).toString('hex')}"`,
          contentType: (req.headers['content-type'] as string | undefined) ?? 'binary/octet-stream',
          lastModified: new Date(now()),
          ...(sse ? { sse } : {}),
          ...(crc32 ? { crc32 } : {}),
        };
        bucket.set(key!, object);
        return reply(200, { etag: object.etag, ...sseHeaders(sse), ...(crc32 ? { 'x-amz-checksum-crc32': crc32 } : {}) });
      }
      case 'GetObject':
      case 'HeadObject': {
        const object = bucket.get(key!);
        if (!object) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key! });
        const size = object.body.length;
        const header = req.headers.range;
        const ranges = header ? rangeParser(size, header) : undefined;
        if (ranges === -1) throw new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', { RangeRequested: header!, ActualObjectSize: size });
        // A malformed header (-2) or several ranges: S3 answers with the whole object.
        const range = Array.isArray(ranges) && ranges.length === 1 ? ranges[0]! : undefined;
        const whole = !range;
        const checksum = whole && object.crc32 && req.headers['x-amz-checksum-mode'] === 'ENABLED' ? { 'x-amz-checksum-crc32': object.crc32, 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
        const bytes = range ? object.body.subarray(range.start, range.end + 1) : object.body;
        const headers = { ...objectHeaders(object), ...checksum, 'content-length': String(bytes.length), ...(range ? { 'content-range': `bytes ${range.start}-${range.end}/${size}` } : {}) };
        return (res) => {
          res.writeHead(range ? 206 : 200, { 'x-amz-request-id': requestId(), date: httpDate(), ...headers });
          res.end(operation === 'GetObject' ? bytes : undefined);
        };
      }
      case 'DeleteObject':
        bucket.delete(key!);
        return reply(204);
      case 'CreateMultipartUpload': {
        const sse = sseOf(req);
        const uploadId = randomBytes(24).toString('base64url');
        uploads.set(uploadId, {
          bucket: bucketName,
          key: key!,
          uploadId,
          partNumbers: [],
          initiated: new Date(now()),
          contentType: (req.headers['content-type'] as string | undefined) ?? 'binary/octet-stream',
          ...(sse ? { sse } : {}),
          parts: new Map(),
        });
        const algorithm = req.headers['x-amz-checksum-algorithm'] as string | undefined;
        return reply(200, { 'content-type': 'application/xml', ...sseHeaders(sse), ...(algorithm ? { 'x-amz-checksum-algorithm': algorithm } : {}) }, xmlDocument({ InitiateMultipartUploadResult: { '@_xmlns': S3_NS, Bucket: bucketName, Key: key!, UploadId: uploadId } }));
      }
      case 'UploadPart': {
        const partNumber = Number(query.get('partNumber'));
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) throw new S3Error(400, 'InvalidArgument', `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`);
        const upload = uploadOf(query, bucketName, key!);
        const data = body();
        const etag = `"${md5(data).toString('hex')}"`;
        upload.parts.set(partNumber, { body: data, etag });
        const crc32 = hasCrc32(req) ? crc32Base64(data) : undefined;
        return reply(200, { etag, ...sseHeaders(upload.sse), ...(crc32 ? { 'x-amz-checksum-crc32': crc32 } : {}) });
      }
      case 'CompleteMultipartUpload': {
        const upload = uploadOf(query, bucketName, key!);
        let listed: Array<{ PartNumber?: string; ETag?: string }>;
        try {
          listed = (xmlParser.parse(body().toString('utf8')) as { CompleteMultipartUpload?: { Part?: Array<{ PartNumber?: string; ETag?: string }> } }).CompleteMultipartUpload?.Part ?? [];
        } catch {
          listed = [];
        }
        if (listed.length === 0) throw new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema');
        const numbers = listed.map((part) => Number(part.PartNumber));
        if (numbers.some((number, i) => !Number.isInteger(number) || (i > 0 && number <= numbers[i - 1]!))) {
          throw new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
        }
        const chosen: Buffer[] = [];
        for (const [index, part] of listed.entries()) {
          const stored = upload.parts.get(numbers[index]!);
          if (!stored || stored.etag !== part.ETag) throw new S3Error(400, 'InvalidPart', 'One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part\'s entity tag.');
          if (index < listed.length - 1 && stored.body.length < MIN_PART_BYTES) throw new S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
          chosen.push(stored.body);
        }
        const data = Buffer.concat(chosen);
        const etag = `"${md5(Buffer.concat(chosen.map(md5))).toString('hex')}-${chosen.length}"`;
        bucket.set(key!, { bucket: bucketName, key: key!, body: data, etag, contentType: upload.contentType, lastModified: new Date(now()), ...(upload.sse ? { sse: upload.sse } : {}), parts: chosen.length });
        uploads.delete(upload.uploadId);
        const location = `${baseUrl}/${bucketName}/${key!}`;
        return reply(200, { 'content-type': 'application/xml', ...sseHeaders(upload.sse) }, xmlDocument({ CompleteMultipartUploadResult: { '@_xmlns': S3_NS, Location: location, Bucket: bucketName, Key: key!, ETag: etag } }));
      }
      case 'AbortMultipartUpload': {
        const upload = uploadOf(query, bucketName, key!);
        uploads.delete(upload.uploadId);
        return reply(204);
      }
      case 'ListObjectsV2': {
        const prefix = query.get('prefix') ?? '';
        const maxKeys = Math.min(Math.max(Number(query.get('max-keys') ?? 1000) || 1000, 1), 1000);
        const after = query.get('continuation-token') ?? query.get('start-after') ?? '';
        const keys = [...bucket.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
        const page = keys.slice(0, maxKeys);
        const truncated = keys.length > page.length;
        return reply(
          200,
          { 'content-type': 'application/xml' },
          xmlDocument({
            ListBucketResult: {
              '@_xmlns': S3_NS,
              Name: bucketName,
              Prefix: prefix,
              KeyCount: page.length,
              MaxKeys: maxKeys,
              IsTruncated: truncated,
              ...(truncated ? { NextContinuationToken: page.at(-1)! } : {}),
              Contents: page.map((k) => {
                const object = bucket.get(k)!;
                return { Key: k, LastModified: object.lastModified.toISOString(), ETag: object.etag, Size: object.body.length, StorageClass: 'STANDARD' };
              }),
            },
          }),
        );
      }
      case 'ListMultipartUploads': {
        const open = [...uploads.values()].filter((u) => u.bucket === bucketName).sort((a, b) => (a.key < b.key ? -1 : 1));
        return reply(
          200,
          { 'content-type': 'application/xml' },
          xmlDocument({
            ListMultipartUploadsResult: {
              '@_xmlns': S3_NS,
              Bucket: bucketName,
              IsTruncated: false,
              Upload: open.map((u) => ({ Key: u.key, UploadId: u.uploadId, Initiated: u.initiated.toISOString(), StorageClass: 'STANDARD' })),
            },
          }),
        );
      }
      case 'Unsupported':
        throw new S3Error(501, 'NotImplemented', 'A header or query you provided implies functionality that is not implemented (by this fake).');
    }
  }

  async function handleS3(req: IncomingMessage, res: ServerResponse, raw: Buffer, oversized: boolean): Promise<void> {
    const target = req.url ?? '/';
    const queryAt = target.indexOf('?');
    const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
    const rawQuery = queryAt === -1 ? '' : target.slice(queryAt + 1);
    const query = new URLSearchParams(rawQuery);
    const slash = rawPath.indexOf('/', 1);
    const bucketName = decodeURIComponent(slash === -1 ? rawPath.slice(1) : rawPath.slice(1, slash));
    const keyPart = slash === -1 ? '' : rawPath.slice(slash + 1);
    const key = keyPart === '' ? undefined : decodeURIComponent(keyPart);
    const method = req.method ?? 'GET';
    const operation = bucketName === '' ? 'Unsupported' : operationOf(method, key, query, req.headers);
    const contentSha256 = req.headers['x-amz-content-sha256'] as string | undefined;
    const entry: FakeS3Request = {
      operation,
      method,
      ...(bucketName ? { bucket: bucketName } : {}),
      ...(key !== undefined ? { key } : {}),
      status: 0,
      ...(contentSha256 ? { contentSha256 } : {}),
      ...(req.headers['content-encoding'] ? { contentEncoding: String(req.headers['content-encoding']) } : {}),
      checksums: [],
    };
    requests.push(entry);
    const resource = key === undefined ? `/${bucketName}` : `/${bucketName}/${key}`;
    res.on('finish', () => {
      entry.status = res.statusCode;
    });
    try {
      const auth = verifySigV4({
        method,
        path: rawPath,
        query: rawQuery,
        headers: headerPairs(req.rawHeaders),
        secretFor: (id) => (id === options.accessKeyId ? options.secretAccessKey : undefined),
        region,
        nowMs: now(),
      });
      if (!auth.ok) throw new S3Error(auth.status, auth.code, auth.message);
      if (oversized) throw new S3Error(400, 'EntityTooLarge', `Your proposed upload exceeds the fake's ${MAX_REQUEST_BYTES}-byte request limit.`);
      const fault = takeFault(operation);
      if (fault) entry.fault = fault.kind;
      if (fault?.kind === 'latency') await sleep(fault.ms);
      if (fault?.kind === 'drop') {
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'status') {
        throw fault.status === 503 ? new S3Error(503, 'SlowDown', 'Please reduce your request rate.') : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
      }
      let payload: Buffer | undefined;
      const body = () => (payload ??= payloadOf(req, raw, auth.payloadHash, entry.checksums));
      // Validate the payload of every request that has one, even where the operation ignores it.
      if (raw.length > 0 || auth.payloadHash === STREAMING_UNSIGNED_PAYLOAD_TRAILER) body();
      const answer = perform(operation, req, bucketName, key, query, body);
      if (fault?.kind === 'drop-after') {
        req.socket.destroy();
        return;
      }
      answer(res);
    } catch (error) {
      if (error instanceof S3Error) {
        entry.error = error.code;
        return sendError(req, res, error, resource);
      }
      throw error;
    }
  }

  // --- control API ------------------------------------------------------------------------------------------------

  const objectSummary = (o: StoredS3Object) => ({ bucket: o.bucket, key: o.key, size: o.body.length, etag: o.etag, contentType: o.contentType, sse: o.sse ?? null, parts: o.parts ?? null, lastModified: o.lastModified.toISOString() });
  const uploadSummary = (u: Upload): OpenUpload => ({ bucket: u.bucket, key: u.key, uploadId: u.uploadId, partNumbers: [...u.parts.keys()].sort((a, b) => a - b), initiated: u.initiated });

  function control(req: IncomingMessage, res: ServerResponse, url: URL, raw: Buffer): void {
    const reply = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(json));
    };
    let body: unknown = {};
    try {
      if (raw.length > 0) body = JSON.parse(raw.toString('utf8'));
    } catch {
      return reply(400, { error: 'body is not JSON' });
    }
    const parse = <T>(schema: z.ZodType<T>): T | undefined => {
      const result = schema.safeParse(body);
      if (!result.success) reply(400, { error: z.prettifyError(result.error) });
      return result.success ? result.data : undefined;
    };
    const bucket = url.searchParams.get('bucket') ?? undefined;
    switch (`${req.method} ${url.pathname}`) {
      case 'POST /_fake/faults': {
        const fault = parse(faultSchema);
        if (!fault) return;
        fake.enqueueFault(fault as QueuedS3Fault);
        return reply(200, { ok: true });
      }
      case 'DELETE /_fake/faults':
        fake.clearFaults();
        return reply(200, { ok: true });
      case 'GET /_fake/objects':
        return reply(200, fake.objects(bucket).map(objectSummary));
      case 'GET /_fake/uploads':
        return reply(200, fake.openUploads(bucket));
      case 'GET /_fake/requests':
        return reply(200, requests);
      case 'POST /_fake/buckets': {
        const args = parse(bucketSchema);
        if (!args) return;
        fake.createBucket(args.name);
        return reply(200, { ok: true });
      }
    }
    return reply(404, { error: `no control route ${req.method} ${url.pathname}` });
  }

  // --- server -------------------------------------------------------------------------------------------------------

  const server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      if ((req.url ?? '').startsWith('/_fake/')) return control(req, res, new URL(req.url ?? '/', baseUrl), raw);
      handleS3(req, res, raw, size > MAX_REQUEST_BYTES).catch((error: unknown) =>
        sendError(req, res, new S3Error(500, 'InternalError', error instanceof Error ? error.message : String(error)), req.url ?? '/'),
      );
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('fake S3 has no port');
  const baseUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  const fake: FakeS3 = {
    url: baseUrl,
    region,
    requests,
    enqueueFault(fault) {
      const parsed = faultSchema.parse(fault);
      const { count, ...rest } = parsed;
      faults.push({ ...(rest as S3Fault & { operation?: string }), remaining: count ?? 1 });
    },
    clearFaults() {
      faults = [];
    },
    createBucket(name) {
      if (!buckets.has(name)) buckets.set(name, new Map());
    },
    object(bucket, key) {
      return buckets.get(bucket)?.get(key);
    },
    objects(bucket) {
      return [...buckets.values()].flatMap((objects) => [...objects.values()]).filter((o) => bucket === undefined || o.bucket === bucket);
    },
    openUploads(bucket) {
      return [...uploads.values()].filter((u) => bucket === undefined || u.bucket === bucket).map(uploadSummary);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
