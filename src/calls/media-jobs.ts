import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { DEFAULT_BACKOFF, nextRetryDelayMs, type BackoffPolicy } from '../core/retry.ts';
import {
  claimMediaJobs,
  completeDownload,
  completeTranscription,
  extendLease,
  failMediaJob,
  MEDIA_JOBS_CHANNEL,
  retryMediaJob,
  type ClaimedMediaJob,
} from '../db/calls.ts';
import type { Db } from '../db/db.ts';
import type { Transcriber } from '../transcription/transcriber.ts';
import type { MediaStorage } from './media-storage.ts';
import { DownloadError, downloadRecording, type DownloadSettings } from './recording-download.ts';
import { createWakeSignal } from '../outbox/wake-signal.ts';

export interface MediaJobWorkerOptions {
  db: Db;
  logger: Logger;
  storage: MediaStorage;
  transcriber: Transcriber;
  download: DownloadSettings;
  transcribeMaxAttempts: number;
  /** Jobs run at once by this process. Transcription takes a core each, so keep it at or below the core count. */
  concurrency: number;
  pollMs: number;
  /** How long a claim holds before another worker may take it over; renewed every third of it while the job runs. */
  leaseMs: number;
  backoff?: BackoffPolicy;
  random?: () => number;
  workerId?: string;
}

export interface MediaJobWorker {
  readonly workerId: string;
  stop(): Promise<void>;
}

/**
 * The worker-role loop for recordings: claim due jobs (FOR UPDATE SKIP LOCKED + lease), download or transcribe,
 * record the outcome fenced on (worker, attempt). Guarantees (docs/ARCHITECTURE.md "Calls and transcription"):
 * a job survives any crash (it is a row, committed with the recording); a dead worker's job is taken over when
 * its lease runs out; a transcript or stored media is recorded exactly once, by the attempt that still holds the
 * job, so a late finisher cannot overwrite or duplicate it; failures retry with full-jitter backoff until
 * `max_attempts`, then the recording is marked failed with the reason, visible in the timeline.
 */
export async function startMediaJobWorker(options: MediaJobWorkerOptions): Promise<MediaJobWorker> {
  const { db } = options;
  const workerId = options.workerId ?? `media-${randomUUID()}`;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const random = options.random ?? Math.random;
  const log = options.logger.child({ component: 'media-jobs', workerId });
  const running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  let stopped = false;
  // A wake that arrives while we are busy is remembered, so a NOTIFY during a claim is never lost.
  const { wake, sleep } = createWakeSignal();
  const unlisten = await db.listen(MEDIA_JOBS_CHANNEL, wake, { onReconnect: wake });

  async function run(job: ClaimedMediaJob, signal: AbortSignal): Promise<void> {
    const fence = { jobId: job.jobId, workerId, attempts: job.attempts };
    const where = { jobId: job.jobId, recordingId: job.recordingId, kind: job.kind, attempt: job.attempts };
    if (job.attempts > job.maxAttempts) {
      // Claimed again after its last allowed attempt died with its worker: stop here rather than crash-loop.
      await failMediaJob(db, fence, { recordingId: job.recordingId, patientId: job.patientId, reason: `${job.kind} gave up: its worker stopped during every one of ${job.maxAttempts} attempts` });
      return;
    }
    try {
      if (job.kind === 'download') {
        if (!job.sourceUrl) throw new DownloadError('the recording has no URL', true);
        const stored = await downloadRecording(options.download, options.storage, { recordingId: job.recordingId, sourceUrl: job.sourceUrl, signal });
        const recorded = await completeDownload(db, fence, { recordingId: job.recordingId, ...stored, transcribeMaxAttempts: options.transcribeMaxAttempts });
        log.info({ ...where, sizeBytes: stored.sizeBytes, recorded }, 'recording downloaded');
      } else {
        if (!job.storageKey) throw new DownloadError('the recording has no stored media', true);
        const transcript = await options.storage.withLocalFile(job.storageKey, (mediaPath) => options.transcriber.transcribe({ mediaPath, signal }));
        const recorded = await completeTranscription(db, fence, { recordingId: job.recordingId, patientId: job.patientId, transcript });
        log.info({ ...where, engine: transcript.engine, emptyReason: transcript.emptyReason, recorded }, 'recording transcribed');
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (stopped && signal.aborted) {
        // Shutting down: hand the job back at once for another worker (this attempt still counts).
        await retryMediaJob(db, fence, { delayMs: 0, error: 'worker stopped mid-job' });
        return;
      }
      const permanent = error instanceof DownloadError && error.permanent;
      if (permanent || job.attempts >= job.maxAttempts) {
        const reason = `${job.kind} failed after ${job.attempts} attempt${job.attempts === 1 ? '' : 's'}: ${message}`;
        await failMediaJob(db, fence, { recordingId: job.recordingId, patientId: job.patientId, reason });
        log.warn({ ...where, reason }, 'media job failed');
        return;
      }
      const delayMs = nextRetryDelayMs(job.attempts, backoff, random);
      await retryMediaJob(db, fence, { delayMs, error: message });
      log.info({ ...where, delayMs, error: message }, 'media job will be retried');
    }
  }

  function launch(job: ClaimedMediaJob): void {
    const controller = new AbortController();
    const fence = { jobId: job.jobId, workerId, attempts: job.attempts };
    const heartbeat = setInterval(() => {
      extendLease(db, fence, options.leaseMs)
        .then((held) => {
          if (!held) {
            log.warn({ jobId: job.jobId }, 'lost the lease on a media job; abandoning it');
            controller.abort(new Error('lease lost'));
          }
        })
        .catch((error: unknown) => log.error({ err: error }, 'renewing a media job lease failed'));
    }, Math.max(50, Math.floor(options.leaseMs / 3)));
    const done = run(job, controller.signal)
      .catch((error: unknown) => log.error({ err: error, jobId: job.jobId }, 'recording a media job outcome failed; its lease will expire and it will run again'))
      .finally(() => {
        clearInterval(heartbeat);
        running.delete(job.jobId);
        wake();
      });
    running.set(job.jobId, { controller, done });
  }

  const loop = (async () => {
    while (!stopped) {
      const room = options.concurrency - running.size;
      if (room <= 0) {
        await sleep(options.pollMs);
        continue;
      }
      let claimed: ClaimedMediaJob[] = [];
      try {
        claimed = await claimMediaJobs(db, { workerId, limit: room, leaseMs: options.leaseMs });
      } catch (error) {
        log.error({ err: error }, 'claiming media jobs failed');
      }
      if (stopped) {
        for (const job of claimed) await retryMediaJob(db, { jobId: job.jobId, workerId, attempts: job.attempts }, { delayMs: 0, error: 'worker stopped' }).catch(() => {});
        break;
      }
      if (claimed.length === 0) {
        await sleep(options.pollMs);
        continue;
      }
      for (const job of claimed) launch(job);
    }
  })();

  return {
    workerId,
    async stop() {
      stopped = true;
      wake();
      await loop;
      for (const { controller } of running.values()) controller.abort(new Error('worker stopping'));
      await Promise.all([...running.values()].map((entry) => entry.done));
      await unlisten().catch(() => {});
    },
  };
}
