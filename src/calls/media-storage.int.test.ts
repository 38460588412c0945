import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeS3, type FakeS3 } from '../test/fake-s3.ts';
import { createLocalMediaStorage, MediaTooLargeError, type MediaStorage } from './media-storage.ts';
import { createS3MediaStorage } from './media-storage-s3.ts';

const MiB = 1024 * 1024;

/** One store under test, with what only its own backend can see: bytes under a key, and anything a failed put left. */
interface StoreUnderTest {
  storage: MediaStorage;
  stored(key: string): Promise<Buffer | undefined>;
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

const stores: Array<{ name: string; start(): Promise<StoreUnderTest> }> = [
  {
    name: 'local disk',
    async start() {
      const dir = await mkdtemp(join(tmpdir(), 'media-contract-'));
      return {
        storage: createLocalMediaStorage(dir),
        stored: (key) => readFile(join(dir, key)).catch(() => undefined),
        leftovers: async () => (await filesUnder(dir)).filter((path) => path.includes('.part-')),
        close: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'S3 (loopback fake)',
    async start() {
      const credentials = { accessKeyId: 'AKIDCONTRACT', secretAccessKey: 'contract-secret' };
      const fake: FakeS3 = await startFakeS3({ ...credentials, buckets: ['recordings'] });
      const storage = createS3MediaStorage({ bucket: 'recordings', region: 'us-east-1', endpoint: fake.url, forcePathStyle: true, credentials, prefix: 'contract/', maxAttempts: 3 });
      return {
        storage,
        stored: async (key) => fake.object('recordings', `contract/${key}`)?.body,
        leftovers: async () => fake.openUploads().map((upload) => `open multipart upload ${upload.key} (parts ${upload.partNumbers.join(',')})`),
        close: () => fake.close(),
      };
    },
  },
];

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function* chunksOf(data: Buffer, chunkBytes = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += chunkBytes) yield data.subarray(at, at + chunkBytes);
}

/** Yields `bytes` of data, then fails the way a download cut mid-body does. */
async function* breaksAfter(bytes: number): AsyncGenerator<Uint8Array> {
  yield* chunksOf(randomBytes(bytes));
  throw new Error('connection reset by peer');
}

describe.each(stores)('MediaStorage contract: $name', ({ start }) => {
  let store: StoreUnderTest;
  beforeEach(async () => {
    store = await start();
  });
  afterEach(async () => {
    await store.close();
  });

  it('stores a body and gives back its size, the whole of it, an inclusive range, and a local file', async () => {
    const data = randomBytes(100_000);
    expect(await store.storage.put('recordings/r1.wav', chunksOf(data), { maxBytes: 1_000_000 })).toEqual({ sizeBytes: data.length });
    expect((await store.stored('recordings/r1.wav'))!.equals(data)).toBe(true);
    expect(await store.storage.size('recordings/r1.wav')).toBe(data.length);
    expect((await readAll(store.storage.read('recordings/r1.wav'))).equals(data)).toBe(true);
    expect((await readAll(store.storage.read('recordings/r1.wav', { start: 100, end: 199 }))).equals(data.subarray(100, 200))).toBe(true);
    expect((await readAll(store.storage.read('recordings/r1.wav', { start: data.length - 1, end: data.length - 1 }))).equals(data.subarray(-1))).toBe(true);
    const seen = await store.storage.withLocalFile('recordings/r1.wav', async (path) => readFile(path));
    expect(seen.equals(data)).toBe(true);
    await expect(store.storage.withLocalFile('recordings/r1.wav', async () => Promise.reject(new Error('engine crashed')))).rejects.toThrow('engine crashed');
  });

  it('stores an empty body, and a second put of a key replaces the first (a retried job writes the same key again)', async () => {
    expect(await store.storage.put('visits/v/empty.webm', chunksOf(Buffer.alloc(0)), { maxBytes: 10 })).toEqual({ sizeBytes: 0 });
    expect(await store.storage.size('visits/v/empty.webm')).toBe(0);
    await store.storage.put('recordings/r2.wav', chunksOf(Buffer.from('first')), { maxBytes: 100 });
    await store.storage.put('recordings/r2.wav', chunksOf(Buffer.from('second')), { maxBytes: 100 });
    expect((await readAll(store.storage.read('recordings/r2.wav'))).toString()).toBe('second');
  });

  it('round-trips a large object byte for byte (on S3: a multipart upload), including a range across a part boundary', async () => {
    const data = randomBytes(12 * MiB + 12345);
    expect(await store.storage.put('recordings/big.wav', chunksOf(data), { maxBytes: 20 * MiB })).toEqual({ sizeBytes: data.length });
    expect(await store.storage.size('recordings/big.wav')).toBe(data.length);
    expect((await readAll(store.storage.read('recordings/big.wav'))).equals(data)).toBe(true);
    const across = { start: 5 * MiB - 10, end: 5 * MiB + 9 };
    expect((await readAll(store.storage.read('recordings/big.wav', across))).equals(data.subarray(across.start, across.end + 1))).toBe(true);
    expect((await store.storage.withLocalFile('recordings/big.wav', (path) => readFile(path))).equals(data)).toBe(true);
    expect(await store.leftovers()).toEqual([]);
  });

  it('keeps nothing of an oversized body, small or past several parts', async () => {
    await expect(store.storage.put('recordings/over.wav', chunksOf(randomBytes(2000), 500), { maxBytes: 1000 })).rejects.toBeInstanceOf(MediaTooLargeError);
    await expect(store.storage.put('recordings/over-big.wav', chunksOf(randomBytes(13 * MiB)), { maxBytes: 11 * MiB })).rejects.toBeInstanceOf(MediaTooLargeError);
    expect(await store.storage.size('recordings/over.wav')).toBeUndefined();
    expect(await store.storage.size('recordings/over-big.wav')).toBeUndefined();
    expect(await store.stored('recordings/over-big.wav')).toBeUndefined();
    expect(await store.leftovers()).toEqual([]);
  });

  it('keeps nothing of a body that fails midway, and passes its error on', async () => {
    await expect(store.storage.put('recordings/cut.wav', breaksAfter(1000), { maxBytes: 20 * MiB })).rejects.toThrow('connection reset by peer');
    await expect(store.storage.put('recordings/cut-big.wav', breaksAfter(11 * MiB), { maxBytes: 20 * MiB })).rejects.toThrow('connection reset by peer');
    expect(await store.storage.size('recordings/cut.wav')).toBeUndefined();
    expect(await store.storage.size('recordings/cut-big.wav')).toBeUndefined();
    expect(await store.leftovers()).toEqual([]);
  });

  it('says a missing key has no size, and fails reading it', async () => {
    expect(await store.storage.size('recordings/missing.wav')).toBeUndefined();
    await expect(readAll(store.storage.read('recordings/missing.wav'))).rejects.toThrow();
    await expect(store.storage.withLocalFile('recordings/missing.wav', async () => 'ran')).rejects.toThrow();
  });

  it.each(['../escape.wav', '/absolute.wav', 'recordings/../../x.wav', '', 'has space.wav', '.hidden', 'recordings//x?.wav'])('refuses the key %j everywhere', async (key) => {
    await expect(store.storage.put(key, chunksOf(Buffer.from('x')), { maxBytes: 10 })).rejects.toThrow(/invalid media key/);
    await expect(store.storage.size(key)).rejects.toThrow(/invalid media key/);
    expect(() => store.storage.read(key)).toThrow(/invalid media key/);
    await expect(store.storage.withLocalFile(key, async () => 'ran')).rejects.toThrow(/invalid media key/);
    expect(await store.leftovers()).toEqual([]);
  });
});
