import type { Logger } from 'pino';
import type { CallsConfig, MediaStoreConfig, TwilioConfig } from '../config.ts';
import type { Db } from '../db/db.ts';
import type { Transcriber } from '../transcription/transcriber.ts';
import { startMediaJobWorker, type MediaJobWorker, type MediaJobWorkerOptions } from './media-jobs.ts';
import { createLocalMediaStorage, type MediaStorage } from './media-storage.ts';
import { DEFAULT_RECORDING_NOTICE, DEFAULT_VOICEMAIL_GREETING, type CallSettings } from './settings.ts';

export const TWILIO_API_ORIGIN = 'https://api.twilio.com';

/** Defaults for everything but credentials and storage; what `parseConfig` yields for an empty environment. */
export const DEFAULT_CALLS_CONFIG: Omit<CallsConfig, 'media'> = {
  recordingFormat: 'wav',
  recordingMaxBytes: 200 * 1024 * 1024,
  downloadMaxAttempts: 8,
  transcribeMaxAttempts: 3,
  jobConcurrency: 1,
  jobLeaseMs: 60_000,
  dialTimeoutSec: 20,
  voicemailMaxSec: 180,
};

/** The one store both roles use, as MEDIA_STORE names it: built once per process in main.ts. */
export async function createMediaStorage(config: MediaStoreConfig): Promise<MediaStorage> {
  switch (config.kind) {
    case 'local':
      return createLocalMediaStorage(config.dir);
    case 's3': {
      // The AWS SDK takes about half a second and 25 MB to load: only a process that stores in S3 loads it.
      const { createS3MediaStorage } = await import('./media-storage-s3.ts');
      return createS3MediaStorage(config);
    }
  }
}

/** The web role's view of calls. */
export function buildCallSettings(args: { config: CallsConfig; twilio: TwilioConfig; storage: MediaStorage; timeoutMs: number }): CallSettings {
  const { config, twilio } = args;
  return {
    twilio: {
      accountSid: twilio.accountSid,
      authToken: twilio.authToken,
      voiceNumber: config.voiceNumber ?? twilio.fromNumber,
      apiBase: twilio.apiBase,
      timeoutMs: args.timeoutMs,
    },
    storage: args.storage,
    recordingNotice: config.recordingNotice ?? DEFAULT_RECORDING_NOTICE,
    voicemailGreeting: config.voicemailGreeting ?? DEFAULT_VOICEMAIL_GREETING,
    dialTimeoutSec: config.dialTimeoutSec,
    voicemailMaxSec: config.voicemailMaxSec,
    downloadMaxAttempts: config.downloadMaxAttempts,
    visits: {
      linkTtlMs: (config.visitLinkTtlMinutes ?? 30) * 60_000,
      iceServers: config.visitIceServers ?? [],
      maxChunkBytes: 8 * 1024 * 1024,
      maxRecordingBytes: config.recordingMaxBytes,
      transcribeMaxAttempts: config.transcribeMaxAttempts,
    },
  };
}

/** The worker role's recording jobs: download with the account's credentials, then transcribe. */
export function startCallsWorker(args: {
  db: Db;
  logger: Logger;
  config: CallsConfig;
  twilio: TwilioConfig;
  storage: MediaStorage;
  transcriber: Transcriber;
  overrides?: Partial<MediaJobWorkerOptions>;
}): Promise<MediaJobWorker> {
  const { config, twilio } = args;
  // Credentials go only to Twilio's API origin (and TWILIO_API_BASE, for a proxy or the loopback fake): a RecordingUrl
  // pointing anywhere else is refused, whatever the (signed) callback said.
  const allowedOrigins = [TWILIO_API_ORIGIN, ...(twilio.apiBase ? [new URL(twilio.apiBase).origin] : [])];
  return startMediaJobWorker({
    db: args.db,
    logger: args.logger,
    storage: args.storage,
    transcriber: args.transcriber,
    download: {
      accountSid: twilio.accountSid,
      authToken: twilio.authToken,
      allowedOrigins,
      format: config.recordingFormat,
      maxBytes: config.recordingMaxBytes,
      timeoutMs: 5 * 60_000,
    },
    transcribeMaxAttempts: config.transcribeMaxAttempts,
    concurrency: config.jobConcurrency,
    pollMs: 1_000,
    leaseMs: config.jobLeaseMs,
    ...args.overrides,
  });
}
