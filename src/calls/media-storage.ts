import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';

/** A stored object larger than the caller allowed; nothing is kept. */
export class MediaTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`media exceeds the ${maxBytes}-byte limit`);
    this.name = 'MediaTooLargeError';
  }
}

/** The store itself failed (S3 refused or could not be reached); `code` is the store's error code when it gave one. */
export class MediaStorageError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MediaStorageError';
  }
}

/** Keys are relative, '/'-separated, of a small alphabet, with no '..': the same rule for every store. */
export function assertMediaKey(key: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(key) || key.includes('..')) throw new Error(`invalid media key ${JSON.stringify(key)}`);
}

/**
 * Where recordings live. Keys are ours (never a provider's or a user's string), relative, '/'-separated.
 * Implementations: local disk (default, below) and S3-compatible object storage (media-storage-s3.ts).
 */
export interface MediaStorage {
  readonly kind: string;
  /**
   * Writes the whole body or nothing: a failed or oversized write leaves no object behind, and no reader ever sees
   * part of one. (On S3 a put reported as failed may have stored the whole object if only its answer was lost;
   * writing the same key again is how callers retry.)
   */
  put(key: string, body: AsyncIterable<Uint8Array>, options: { maxBytes: number }): Promise<{ sizeBytes: number }>;
  /** Size in bytes, or undefined when there is no such object. */
  size(key: string): Promise<number | undefined>;
  /** Bytes [start, end] inclusive, or the whole object. */
  read(key: string, range?: { start: number; end: number }): Readable;
  /** A local file path for tools that need one (ffmpeg); valid only inside `fn`. Throws, without calling `fn`, when there is no such object. */
  withLocalFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T>;
}

/**
 * Files under `rootDir` (default `$DATA_DIR/media`), which no route serves directly: media leaves only through
 * the authorised, audited API. A write goes to a temporary name, is fsynced, then renamed into place, so a crash
 * mid-download never leaves a truncated recording under the final key.
 */
export function createLocalMediaStorage(rootDir: string): MediaStorage {
  const root = resolve(rootDir);
  const pathOf = (key: string): string => {
    assertMediaKey(key);
    const path = resolve(root, key);
    if (!path.startsWith(root + sep)) throw new Error(`media key escapes the media directory: ${key}`);
    return path;
  };

  return {
    kind: 'local',
    async put(key, body, { maxBytes }) {
      const path = pathOf(key);
      await mkdir(dirname(path), { recursive: true });
      const temporary = join(dirname(path), `.part-${randomBytes(6).toString('hex')}`);
      const file = await open(temporary, 'wx', 0o600);
      let sizeBytes = 0;
      try {
        for await (const chunk of body) {
          sizeBytes += chunk.byteLength;
          if (sizeBytes > maxBytes) throw new MediaTooLargeError(maxBytes);
          await file.write(chunk);
        }
        await file.sync();
        await file.close();
        await rename(temporary, path);
        return { sizeBytes };
      } catch (error) {
        await file.close().catch(() => {});
        await rm(temporary, { force: true });
        throw error;
      }
    },
    async size(key) {
      try {
        return (await stat(pathOf(key))).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    read(key, range) {
      return createReadStream(pathOf(key), range ? { start: range.start, end: range.end } : {});
    },
    async withLocalFile(key, fn) {
      const path = pathOf(key);
      await stat(path);
      return fn(path);
    },
  };
}
