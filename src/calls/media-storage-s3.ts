import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, HeadObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3StoreConfig } from '../config.ts';
import { assertMediaKey, MediaStorageError, MediaTooLargeError, type MediaStorage } from './media-storage.ts';

export interface S3MediaStorageOptions {
  /** Where withLocalFile puts its private copy; default the OS temp directory. */
  tempDir?: string;
  /** Multipart part size; S3's minimum (and lib-storage's default) is 5 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once; memory held is about partSizeBytes × (queueSize + 1). */
  queueSize?: number;
  /** A socket idle this long is closed and the request retried (a stalled S3 must not hold a job for ever). */
  socketTimeoutMs?: number;
  connectionTimeoutMs?: number;
}

const MIN_PART_BYTES = 5 * 1024 * 1024;

/**
 * Recordings in an S3-compatible bucket, through the official AWS SDK v3, so web and worker processes on different
 * machines share one store. Same contract as the local store (MediaStorage):
 * - `put` is whole-or-nothing. lib-storage's Upload sends a body of one part or less as a single PutObject, which
 *   S3 applies atomically; a larger one as a multipart upload, which creates no object until
 *   CompleteMultipartUpload. If the body fails or passes `maxBytes`, or a part cannot be stored, Upload waits for
 *   the parts in flight and then sends AbortMultipartUpload (`leavePartsOnError: false`), so no parts are left
 *   billed. Only a crash between the first part and that abort leaves an incomplete upload, never an object: a
 *   bucket lifecycle rule (AbortIncompleteMultipartUpload) sweeps those (docs/ARCHITECTURE.md §14).
 * - Retries are the SDK's, configured explicitly: standard mode, `maxAttempts` per request (first included),
 *   exponential backoff with jitter on throttling (503 SlowDown), 5xx and dropped or timed-out connections. Every
 *   request is safe to repeat: Upload hands the SDK each part as a Buffer (a stream body could not be replayed),
 *   and a PutObject or UploadPart repeated after a lost answer writes the same bytes to the same key or part. So
 *   requests are at-least-once, and the object is written once. A 4xx (bad signature, no such bucket) is not
 *   retried.
 * - `size` is HeadObject's Content-Length, undefined on 404; `read` is GetObject with an inclusive Range.
 * - `withLocalFile` downloads to a fresh private directory (0700, file 0600), checks the byte count, runs `fn`,
 *   then deletes the copy whatever `fn` did.
 */
export function createS3MediaStorage(config: S3StoreConfig, options: S3MediaStorageOptions = {}): MediaStorage {
  const partSize = options.partSizeBytes ?? MIN_PART_BYTES;
  if (partSize < MIN_PART_BYTES) throw new Error(`S3 parts must be at least ${MIN_PART_BYTES} bytes`);
  const client = new S3Client({
    region: config.region,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    forcePathStyle: config.forcePathStyle,
    ...(config.credentials ? { credentials: config.credentials } : {}),
    maxAttempts: config.maxAttempts,
    retryMode: 'standard',
    requestHandler: { connectionTimeout: options.connectionTimeoutMs ?? 5_000, socketTimeout: options.socketTimeoutMs ?? 60_000 },
  });
  const Bucket = config.bucket;
  const objectKey = (key: string) => {
    assertMediaKey(key);
    return `${config.prefix}${key}`;
  };
  const fail = (action: string, key: string, error: unknown): MediaStorageError => {
    const code = error instanceof S3ServiceException ? error.name : (error as { code?: string } | undefined)?.code;
    const message = error instanceof Error ? error.message : String(error);
    return new MediaStorageError(`S3 ${action} ${Bucket}/${key} failed${code ? ` (${code})` : ''}: ${message}`, code, { cause: error });
  };
  const getObject = (Key: string, range?: { start: number; end: number }, abortSignal?: AbortSignal) =>
    client.send(new GetObjectCommand({ Bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }), abortSignal ? { abortSignal } : {});

  return {
    kind: 's3',
    async put(key, body, { maxBytes }) {
      const Key = objectKey(key);
      let sizeBytes = 0;
      let bodyError: unknown;
      const counted = Readable.from(
        (async function* () {
          try {
            for await (const chunk of body) {
              sizeBytes += chunk.byteLength;
              if (sizeBytes > maxBytes) throw new MediaTooLargeError(maxBytes);
              yield chunk;
            }
          } catch (error) {
            bodyError = error;
            throw error;
          }
        })(),
        { objectMode: false },
      );
      const upload = new Upload({
        client,
        params: {
          Bucket,
          Key,
          Body: counted,
          // What the object is, from our key's extension; the database keeps the recording's own content type.
          ContentType: CONTENT_TYPES[extname(key).toLowerCase()] ?? 'application/octet-stream',
          // SSE asks S3 to encrypt the object at rest: AES256 with S3-managed keys (SSE-S3), aws:kms with a KMS key
          // (the bucket's default or AWS's aws/s3), whose every use CloudTrail logs. It guards the disks, not access:
          // whoever may GetObject (and, for KMS, kms:Decrypt) reads plaintext. Unset, the bucket's default applies.
          ...(config.sse ? { ServerSideEncryption: config.sse } : {}),
        },
        partSize,
        queueSize: options.queueSize ?? 2,
        leavePartsOnError: false,
      });
      try {
        await upload.done();
        return { sizeBytes };
      } catch (error) {
        // The caller's own failure (a broken download, too many bytes) is passed on as it came, as the local store does.
        if (bodyError !== undefined) throw bodyError;
        throw fail('upload of', Key, error);
      } finally {
        counted.destroy();
      }
    },
    async size(key) {
      const Key = objectKey(key);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket, Key }));
        return head.ContentLength ?? 0;
      } catch (error) {
        // A HEAD answer has no body, so a 404 cannot say whether the key or the bucket is missing; either way there is no object.
        if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404) return undefined;
        throw fail('HeadObject', Key, error);
      }
    },
    read(key, range) {
      const Key = objectKey(key);
      const out = new PassThrough();
      const abort = new AbortController();
      // A reader that goes away (a browser closing a media request) ends the S3 request too.
      out.once('close', () => abort.abort());
      getObject(Key, range, abort.signal)
        .then((response) => pipeline(response.Body as Readable, out))
        .catch((error: unknown) => {
          if (!out.destroyed) out.destroy(fail('GetObject', Key, error));
        });
      return out;
    },
    async withLocalFile(key, fn) {
      const Key = objectKey(key);
      // mkdtemp makes the directory 0700; the file is created 0600 inside it, so no other local user reads the recording.
      const dir = await mkdtemp(join(options.tempDir ?? tmpdir(), 'switchboard-media-'));
      try {
        const path = join(dir, `media${extname(key)}`);
        let expected: number | undefined;
        try {
          const response = await getObject(Key);
          expected = response.ContentLength;
          await pipeline(response.Body as Readable, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
        } catch (error) {
          throw fail('GetObject', Key, error);
        }
        const written = (await stat(path)).size;
        if (expected !== undefined && written !== expected) throw new MediaStorageError(`S3 GetObject ${Bucket}/${Key} ended after ${written} of ${expected} bytes`);
        return await fn(path);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

const CONTENT_TYPES: Record<string, string> = { '.wav': 'audio/x-wav', '.mp3': 'audio/mpeg', '.webm': 'video/webm' };
