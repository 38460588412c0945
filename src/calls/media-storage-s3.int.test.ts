import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { S3StoreConfig } from '../config.ts';
import { startFakeS3, type FakeS3 } from '../test/fake-s3.ts';
import { MediaStorageError, type MediaStorage } from './media-storage.ts';
import { createS3MediaStorage, type S3MediaStorageOptions } from './media-storage-s3.ts';

const MiB = 1024 * 1024;
const CREDENTIALS = { accessKeyId: 'AKIDS3STORE', secretAccessKey: 's3-store-secret-0123456789' };

let fake: FakeS3;
let tempDir: string;
beforeEach(async () => {
  fake = await startFakeS3({ ...CREDENTIALS, buckets: ['care-media'] });
  tempDir = await mkdtemp(join(tmpdir(), 's3-store-temp-'));
});
afterEach(async () => {
  await fake.close();
  await rm(tempDir, { recursive: true, force: true });
});

function store(overrides: Partial<S3StoreConfig> = {}, options: S3MediaStorageOptions = {}): MediaStorage {
  return createS3MediaStorage({ bucket: 'care-media', region: 'us-east-1', endpoint: fake.url, forcePathStyle: true, credentials: CREDENTIALS, prefix: 'switchboard/', maxAttempts: 3, ...overrides }, { tempDir, ...options });
}

async function* chunksOf(data: Buffer, chunkBytes = 256 * 1024): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += chunkBytes) yield data.subarray(at, at + chunkBytes);
}

const operations = () => fake.requests.map((r) => `${r.operation} ${r.status}`);

describe('S3 media storage', () => {
  it('writes under the prefix with the SSE header, one PutObject with a signed payload and a CRC32', async () => {
    const data = randomBytes(4000);
    await store({ sse: 'AES256' }).put('recordings/r1.wav', chunksOf(data), { maxBytes: 10_000 });
    expect(fake.object('care-media', 'switchboard/recordings/r1.wav')).toMatchObject({ sse: 'AES256', contentType: 'audio/x-wav' });
    expect(fake.objects().map((o) => o.key)).toEqual(['switchboard/recordings/r1.wav']);
    expect(fake.requests).toMatchObject([{ operation: 'PutObject', status: 200, contentSha256: expect.stringMatching(/^[0-9a-f]{64}$/), checksums: ['crc32'] }]);
  });

  it('sends a large body as a multipart upload of signed 5 MiB parts, completed once', async () => {
    const data = randomBytes(11 * MiB);
    await store().put('recordings/big.wav', chunksOf(data), { maxBytes: 20 * MiB });
    expect(operations().sort()).toEqual(['CompleteMultipartUpload 200', 'CreateMultipartUpload 200', 'UploadPart 200', 'UploadPart 200', 'UploadPart 200']);
    expect(fake.requests.filter((r) => r.operation === 'UploadPart').every((r) => /^[0-9a-f]{64}$/.test(r.contentSha256 ?? '') && r.checksums.includes('crc32'))).toBe(true);
    expect(fake.object('care-media', 'switchboard/recordings/big.wav')).toMatchObject({ parts: 3 });
    expect(fake.object('care-media', 'switchboard/recordings/big.wav')!.body.equals(data)).toBe(true);
  });

  it('aborts the multipart upload when the body passes maxBytes after parts were stored', async () => {
    await expect(store().put('recordings/over.wav', chunksOf(randomBytes(16 * MiB)), { maxBytes: 12 * MiB })).rejects.toThrow(/exceeds the 12582912-byte limit/);
    expect(operations()).toContain('UploadPart 200');
    expect(operations().at(-1)).toBe('AbortMultipartUpload 204');
    expect(fake.openUploads()).toEqual([]);
    expect(fake.objects()).toEqual([]);
  });

  it('is retried by the SDK through a 503 SlowDown, a 500 on a part and a dropped connection, and succeeds', async () => {
    fake.enqueueFault({ kind: 'status', status: 503, operation: 'PutObject' });
    await store().put('recordings/small.wav', chunksOf(Buffer.from('small body')), { maxBytes: 100 });
    expect(operations()).toEqual(['PutObject 503', 'PutObject 200']);
    expect(fake.object('care-media', 'switchboard/recordings/small.wav')!.body.toString()).toBe('small body');

    fake.requests.length = 0;
    fake.enqueueFault({ kind: 'status', status: 500, operation: 'UploadPart' });
    fake.enqueueFault({ kind: 'drop', operation: 'CompleteMultipartUpload' });
    const data = randomBytes(6 * MiB);
    await store().put('recordings/big.wav', chunksOf(data), { maxBytes: 10 * MiB });
    expect(operations().filter((o) => o.startsWith('UploadPart'))).toContain('UploadPart 500');
    expect(fake.requests.filter((r) => r.operation === 'CompleteMultipartUpload').map((r) => r.fault ?? r.status)).toEqual(['drop', 200]);
    expect(fake.object('care-media', 'switchboard/recordings/big.wav')!.body.equals(data)).toBe(true);
    expect(fake.openUploads()).toEqual([]);
  });

  it('repeats a PutObject whose answer was lost: at least once on the wire, one object', async () => {
    fake.enqueueFault({ kind: 'drop-after', operation: 'PutObject' });
    await store().put('recordings/once.wav', chunksOf(Buffer.from('the bytes')), { maxBytes: 100 });
    expect(fake.requests.map((r) => r.fault ?? r.status)).toEqual(['drop-after', 200]);
    expect(fake.objects().map((o) => [o.key, o.body.toString()])).toEqual([['switchboard/recordings/once.wav', 'the bytes']]);
  });

  it('fails, storing nothing, when every attempt is throttled', async () => {
    fake.enqueueFault({ kind: 'status', status: 503, count: 2 });
    const error = await store({ maxAttempts: 2 }).put('recordings/r.wav', chunksOf(Buffer.from('x')), { maxBytes: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MediaStorageError);
    expect(error).toMatchObject({ code: 'SlowDown' });
    expect(operations()).toEqual(['PutObject 503', 'PutObject 503']);
    expect(fake.objects()).toEqual([]);
  });

  it('aborts the upload when a part keeps failing, leaving no parts and no object', async () => {
    // Enough for every attempt at both parts (two are in flight at once).
    fake.enqueueFault({ kind: 'status', status: 500, count: 6, operation: 'UploadPart' });
    const error = await store().put('recordings/r.wav', chunksOf(randomBytes(7 * MiB)), { maxBytes: 10 * MiB }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'MediaStorageError', code: 'InternalError' });
    expect(operations()).toContain('AbortMultipartUpload 204');
    expect(fake.openUploads()).toEqual([]);
    expect(fake.objects()).toEqual([]);
  });

  it('surfaces a wrong secret as a signature failure, once (a 403 is not retried), with nothing stored', async () => {
    const wrong = store({ credentials: { ...CREDENTIALS, secretAccessKey: 'the-wrong-secret' } });
    const error = await wrong.put('recordings/r.wav', chunksOf(Buffer.from('x')), { maxBytes: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MediaStorageError);
    expect(error).toMatchObject({ code: 'SignatureDoesNotMatch', message: expect.stringContaining('care-media/switchboard/recordings/r.wav') });
    expect(fake.requests).toMatchObject([{ operation: 'PutObject', status: 403, error: 'SignatureDoesNotMatch' }]);
    expect(fake.objects()).toEqual([]);
    // Only a 404 means "no such object": a refused HeadObject is an error, not a missing recording.
    await expect(wrong.size('recordings/r.wav')).rejects.toBeInstanceOf(MediaStorageError);
  });

  it('hands withLocalFile a private copy (0600 in a 0700 directory) and deletes it afterwards, even when fn throws', async () => {
    const s3 = store();
    const data = randomBytes(50_000);
    await s3.put('recordings/r.wav', chunksOf(data), { maxBytes: 100_000 });
    let seenPath = '';
    const result = await s3.withLocalFile('recordings/r.wav', async (path) => {
      seenPath = path;
      expect(path.startsWith(tempDir)).toBe(true);
      expect(path.endsWith('.wav')).toBe(true);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await stat(dirname(path))).mode & 0o777).toBe(0o700);
      return (await readFile(path)).equals(data);
    });
    expect(result).toBe(true);
    await expect(stat(seenPath)).rejects.toMatchObject({ code: 'ENOENT' });

    await expect(s3.withLocalFile('recordings/r.wav', async () => Promise.reject(new Error('ffmpeg died')))).rejects.toThrow('ffmpeg died');
    expect(await readdir(tempDir)).toEqual([]);
  });

  it('reads through a 503 (retried) and answers size from HeadObject', async () => {
    const s3 = store();
    await s3.put('recordings/r.wav', chunksOf(Buffer.from('0123456789')), { maxBytes: 100 });
    fake.enqueueFault({ kind: 'status', status: 503, operation: 'GetObject' });
    const chunks: Buffer[] = [];
    for await (const chunk of s3.read('recordings/r.wav', { start: 2, end: 5 })) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('2345');
    expect(await s3.size('recordings/r.wav')).toBe(10);
    expect(operations().slice(1)).toEqual(['GetObject 503', 'GetObject 206', 'HeadObject 200']);
  });
});
