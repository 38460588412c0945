import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeS3, type FakeS3 } from './fake-s3.ts';

const CREDENTIALS = { accessKeyId: 'AKIDFAKES3TEST', secretAccessKey: 'fake-s3-secret-0123456789abcdef' };
const Bucket = 'media';
const MiB = 1024 * 1024;

let fake: FakeS3;
const clients: S3Client[] = [];
beforeEach(async () => {
  fake = await startFakeS3({ ...CREDENTIALS });
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await fake.close();
});

function client(overrides: Partial<S3ClientConfig> = {}): S3Client {
  const made = new S3Client({ region: 'us-east-1', endpoint: fake.url, forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 3, ...overrides });
  clients.push(made);
  return made;
}

const errorOf = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (error: { name: string; $metadata?: { httpStatusCode?: number } }) => ({ name: error.name, status: error.$metadata?.httpStatusCode }),
  );

describe('fake S3: objects, as the SDK sends them', () => {
  it('stores a signed-payload PutObject and serves Get, Head, ranges, 416 and Delete', async () => {
    const s3 = client();
    const body = randomBytes(1000);
    const put = await s3.send(new PutObjectCommand({ Bucket, Key: 'a/b.wav', Body: body, ContentType: 'audio/x-wav' }));
    expect(put.ETag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(fake.object(Bucket, 'a/b.wav')!.body.equals(body)).toBe(true);
    expect(fake.requests.at(-1)).toMatchObject({ operation: 'PutObject', status: 200, contentSha256: expect.stringMatching(/^[0-9a-f]{64}$/), checksums: ['crc32'] });

    const whole = await s3.send(new GetObjectCommand({ Bucket, Key: 'a/b.wav' }));
    expect(Buffer.from(await whole.Body!.transformToByteArray()).equals(body)).toBe(true);
    expect(whole).toMatchObject({ ContentType: 'audio/x-wav', ContentLength: 1000, ChecksumCRC32: expect.any(String) });
    const part = await s3.send(new GetObjectCommand({ Bucket, Key: 'a/b.wav', Range: 'bytes=10-19' }));
    expect(part.ContentRange).toBe('bytes 10-19/1000');
    expect(part.$metadata.httpStatusCode).toBe(206);
    expect(Buffer.from(await part.Body!.transformToByteArray()).equals(body.subarray(10, 20))).toBe(true);
    expect(await errorOf(s3.send(new GetObjectCommand({ Bucket, Key: 'a/b.wav', Range: 'bytes=5000-' })))).toEqual({ name: 'InvalidRange', status: 416 });
    expect((await s3.send(new HeadObjectCommand({ Bucket, Key: 'a/b.wav' }))).ContentLength).toBe(1000);

    await s3.send(new DeleteObjectCommand({ Bucket, Key: 'a/b.wav' }));
    expect(fake.object(Bucket, 'a/b.wav')).toBeUndefined();
    expect(await errorOf(s3.send(new GetObjectCommand({ Bucket, Key: 'a/b.wav' })))).toEqual({ name: 'NoSuchKey', status: 404 });
    expect(await errorOf(s3.send(new HeadObjectCommand({ Bucket, Key: 'a/b.wav' })))).toEqual({ name: 'NotFound', status: 404 });
    expect(await errorOf(s3.send(new PutObjectCommand({ Bucket: 'other', Key: 'k', Body: 'x' })))).toEqual({ name: 'NoSuchBucket', status: 404 });
  });

  it('decodes a streamed aws-chunked body (STREAMING-UNSIGNED-PAYLOAD-TRAILER) and checks its CRC32 trailer', async () => {
    const body = randomBytes(300_000);
    const chunks = [body.subarray(0, 100_000), body.subarray(100_000)];
    await client().send(new PutObjectCommand({ Bucket, Key: 'streamed', ContentLength: body.length, Body: Readable.from(chunks) }));
    expect(fake.object(Bucket, 'streamed')!.body.equals(body)).toBe(true);
    expect(fake.requests.at(-1)).toMatchObject({ operation: 'PutObject', status: 200, contentSha256: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', contentEncoding: 'aws-chunked', checksums: ['crc32'] });
  });

  it('takes UNSIGNED-PAYLOAD, as the SDK sends a stream when checksums are only sent when required', async () => {
    const body = randomBytes(5000);
    await client({ requestChecksumCalculation: 'WHEN_REQUIRED' }).send(new PutObjectCommand({ Bucket, Key: 'unsigned', ContentLength: body.length, Body: Readable.from([body]) }));
    expect(fake.object(Bucket, 'unsigned')!.body.equals(body)).toBe(true);
    expect(fake.requests.at(-1)).toMatchObject({ contentSha256: 'UNSIGNED-PAYLOAD', checksums: [] });
  });

  it('refuses a body changed after signing, and a CRC32 that does not match, storing nothing', async () => {
    const tampered = client({ maxAttempts: 1 });
    // After the SDK has signed and checksummed the request, swap the body: what a corrupting proxy would do.
    tampered.middlewareStack.add((next) => async (args) => {
      const request = args.request as { body?: unknown };
      if (Buffer.isBuffer(request.body) || request.body instanceof Uint8Array) request.body = Buffer.from('X'.repeat((request.body as Uint8Array).length));
      return next(args);
    }, { step: 'deserialize', name: 'swapBody' });
    expect(await errorOf(tampered.send(new PutObjectCommand({ Bucket, Key: 'k', Body: Buffer.from('hello world') })))).toEqual({ name: 'XAmzContentSHA256Mismatch', status: 400 });

    const badCrc = client({ maxAttempts: 1, requestChecksumCalculation: 'WHEN_REQUIRED' });
    const error = await errorOf(badCrc.send(new PutObjectCommand({ Bucket, Key: 'k', Body: Buffer.from('hello world'), ChecksumCRC32: 'AAAAAA==' })));
    expect(error).toEqual({ name: 'BadDigest', status: 400 });
    expect(fake.objects()).toEqual([]);
  });

  it('refuses a wrong secret with SignatureDoesNotMatch and an unknown key id with InvalidAccessKeyId', async () => {
    const wrong = client({ credentials: { ...CREDENTIALS, secretAccessKey: 'not-the-secret' } });
    expect(await errorOf(wrong.send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'x' })))).toEqual({ name: 'SignatureDoesNotMatch', status: 403 });
    const unknown = client({ credentials: { accessKeyId: 'AKIDNOBODY', secretAccessKey: CREDENTIALS.secretAccessKey } });
    expect(await errorOf(unknown.send(new GetObjectCommand({ Bucket, Key: 'k' })))).toEqual({ name: 'InvalidAccessKeyId', status: 403 });
    expect(fake.requests.map((r) => r.status)).toEqual([403, 403]);
    expect(fake.objects()).toEqual([]);
  });

  it('answers with its own clock, so the SDK corrects a skewed one as it does against S3', async () => {
    await fake.close();
    fake = await startFakeS3({ ...CREDENTIALS, now: () => Date.now() + 60 * 60_000 });
    await client().send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'x' }));
    expect(fake.requests.map((r) => `${r.status} ${r.error ?? ''}`.trim())).toEqual(['403 RequestTimeTooSkewed', '200']);
  });

  it('lists objects by prefix (ListObjectsV2)', async () => {
    const s3 = client();
    for (const key of ['p/a', 'p/b', 'q/c']) await s3.send(new PutObjectCommand({ Bucket, Key: key, Body: key }));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'p/' }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
      ['p/a', 3],
      ['p/b', 3],
    ]);
  });
});

describe('fake S3: multipart uploads', () => {
  it('assembles parts on Complete only, and checks part order, size and ETags', async () => {
    const s3 = client();
    const first = randomBytes(5 * MiB);
    const second = randomBytes(1234);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: 'big', ServerSideEncryption: 'AES256' }));
    const one = await s3.send(new UploadPartCommand({ Bucket, Key: 'big', UploadId, PartNumber: 1, Body: first }));
    const two = await s3.send(new UploadPartCommand({ Bucket, Key: 'big', UploadId, PartNumber: 2, Body: second }));
    expect(fake.object(Bucket, 'big')).toBeUndefined();
    expect(fake.openUploads()).toMatchObject([{ key: 'big', uploadId: UploadId, partNumbers: [1, 2] }]);

    const wrongOrder = { Parts: [{ PartNumber: 2, ETag: two.ETag }, { PartNumber: 1, ETag: one.ETag }] };
    expect(await errorOf(s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'big', UploadId, MultipartUpload: wrongOrder })))).toEqual({ name: 'InvalidPartOrder', status: 400 });
    const wrongTag = { Parts: [{ PartNumber: 1, ETag: '"0000"' }, { PartNumber: 2, ETag: two.ETag }] };
    expect(await errorOf(s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'big', UploadId, MultipartUpload: wrongTag })))).toEqual({ name: 'InvalidPart', status: 400 });

    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'big', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: one.ETag }, { PartNumber: 2, ETag: two.ETag }] } }));
    expect(done.ETag).toMatch(/^"[0-9a-f]{32}-2"$/);
    expect(fake.object(Bucket, 'big')).toMatchObject({ sse: 'AES256', parts: 2 });
    expect(fake.object(Bucket, 'big')!.body.equals(Buffer.concat([first, second]))).toBe(true);
    expect(fake.openUploads()).toEqual([]);
  });

  it('refuses a part under 5 MiB that is not the last, and forgets an aborted upload', async () => {
    const s3 = client();
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: 'small' }));
    const one = await s3.send(new UploadPartCommand({ Bucket, Key: 'small', UploadId, PartNumber: 1, Body: Buffer.alloc(100) }));
    const two = await s3.send(new UploadPartCommand({ Bucket, Key: 'small', UploadId, PartNumber: 2, Body: Buffer.alloc(100) }));
    const parts = { Parts: [{ PartNumber: 1, ETag: one.ETag }, { PartNumber: 2, ETag: two.ETag }] };
    expect(await errorOf(s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'small', UploadId, MultipartUpload: parts })))).toEqual({ name: 'EntityTooSmall', status: 400 });
    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: 'small', UploadId }));
    expect(fake.openUploads()).toEqual([]);
    expect(await errorOf(s3.send(new UploadPartCommand({ Bucket, Key: 'small', UploadId, PartNumber: 3, Body: 'x' })))).toEqual({ name: 'NoSuchUpload', status: 404 });
    expect(fake.objects()).toEqual([]);
  });
});

describe('fake S3: faults', () => {
  it('answers 503 SlowDown for the next N requests of an operation, then works; the SDK retries', async () => {
    fake.enqueueFault({ kind: 'status', status: 503, count: 2, operation: 'PutObject' });
    await client().send(new GetObjectCommand({ Bucket, Key: 'none' })).catch(() => {});
    await client().send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'x' }));
    expect(fake.requests.map((r) => `${r.operation} ${r.status}`)).toEqual(['GetObject 404', 'PutObject 503', 'PutObject 503', 'PutObject 200']);
    expect(fake.requests[1]).toMatchObject({ error: 'SlowDown', fault: 'status' });
  });

  it('gives up with the SDK when every attempt fails (500 InternalError)', async () => {
    fake.enqueueFault({ kind: 'status', status: 500, count: 5 });
    expect(await errorOf(client({ maxAttempts: 2 }).send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'x' })))).toEqual({ name: 'InternalError', status: 500 });
    expect(fake.requests).toHaveLength(2);
    expect(fake.objects()).toEqual([]);
  });

  it('drops a connection before or after doing the work', async () => {
    fake.enqueueFault({ kind: 'drop' });
    await client().send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'one' }));
    expect(fake.requests.map((r) => r.fault ?? r.status)).toEqual(['drop', 200]);

    fake.enqueueFault({ kind: 'drop-after', operation: 'PutObject' });
    const error = await client({ maxAttempts: 1 }).send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'two' })).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    // Stored although the client never heard so: a retry must be harmless.
    expect(fake.object(Bucket, 'k')!.body.toString()).toBe('two');
  });

  it('delays a request (latency) and then answers it', async () => {
    fake.enqueueFault({ kind: 'latency', ms: 150 });
    const started = performance.now();
    await client().send(new PutObjectCommand({ Bucket, Key: 'k', Body: 'x' }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(fake.requests[0]).toMatchObject({ fault: 'latency', status: 200 });
  });

  it('has a JSON control API for another process', async () => {
    const control = (method: string, path: string, body?: unknown) =>
      fetch(`${fake.url}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
    expect((await control('POST', '/_fake/faults', { kind: 'status', status: 418 })).status).toBe(400);
    expect((await control('POST', '/_fake/faults', { kind: 'status', status: 503 })).status).toBe(200);
    expect((await control('DELETE', '/_fake/faults')).status).toBe(200);
    expect((await control('POST', '/_fake/buckets', { name: 'second' })).status).toBe(200);
    await client().send(new PutObjectCommand({ Bucket: 'second', Key: 'k', Body: 'abc' }));
    expect(await (await control('GET', '/_fake/objects?bucket=second')).json()).toMatchObject([{ bucket: 'second', key: 'k', size: 3 }]);
    expect(await (await control('GET', '/_fake/uploads')).json()).toEqual([]);
    expect(await (await control('GET', '/_fake/requests')).json()).toMatchObject([{ operation: 'PutObject', status: 200 }]);
  });
});
