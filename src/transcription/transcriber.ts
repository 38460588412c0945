export interface TranscriptSegment {
  startSec: number;
  endSec: number;
  text: string;
}

export interface Transcript {
  /** The whole text, segments joined by a space; '' when nothing was recognised. */
  text: string;
  segments: TranscriptSegment[];
  /** Length of the audio as decoded, 0 when the media could not be decoded. */
  durationSec: number;
  engine: string;
  /** Set exactly when `text` is empty: why (unreadable media, no audio stream, silence, nothing recognised). */
  emptyReason?: EmptyReason;
}

export type EmptyReason = 'unreadable-media' | 'no-audio' | 'silence' | 'no-speech-recognised';

export interface Transcriber {
  readonly engine: string;
  /**
   * Media that cannot be decoded or holds no speech resolves to an empty transcript with `emptyReason`.
   * Rejects only for our own failures: TranscriptionError (engine missing or crashed, model unreadable, no file at
   * `mediaPath`, time limit),
   * or the signal's reason when `signal` aborts.
   */
  transcribe(input: { mediaPath: string; signal?: AbortSignal }): Promise<Transcript>;
}

export type TranscriptionErrorCode = 'engine-missing' | 'engine-failed' | 'model-unavailable' | 'media-missing' | 'timed-out';

/** An infrastructure failure: the job should be retried or an operator paged; the media itself is not to blame. */
export class TranscriptionError extends Error {
  constructor(
    readonly code: TranscriptionErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TranscriptionError';
  }
}

export function emptyTranscript(engine: string, emptyReason: EmptyReason, durationSec = 0): Transcript {
  return { text: '', segments: [], durationSec, engine, emptyReason };
}
