import type { MediaStorage } from './media-storage.ts';
import { MediaStorageError, MediaTooLargeError } from './media-storage.ts';

/** A download that failed; `permanent` ones (not audio, too large, a URL we will not send credentials to) are not retried. */
export class DownloadError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DownloadError';
  }
}

export interface DownloadSettings {
  accountSid: string;
  authToken: string;
  /** Origins we may send the account credentials to: https://api.twilio.com, plus TWILIO_API_BASE's origin when set. */
  allowedOrigins: readonly string[];
  format: 'wav' | 'mp3';
  maxBytes: number;
  timeoutMs: number;
}

const EXTENSIONS: Record<string, string> = { 'audio/x-wav': 'wav', 'audio/wav': 'wav', 'audio/wave': 'wav', 'audio/mpeg': 'mp3', 'audio/mp3': 'mp3' };

/**
 * Fetches a Twilio recording with HTTP Basic auth (AccountSid:AuthToken; required when "Enforce HTTP Auth on Media
 * URLs" is on, which HIPAA accounts must use) and streams it into storage. One attempt: the durable job retries.
 * RecordingUrl has no extension; `.wav` asks for the dual-channel WAV as recorded, `.mp3` for a smaller file.
 */
export async function downloadRecording(
  settings: DownloadSettings,
  storage: MediaStorage,
  args: { recordingId: string; sourceUrl: string; signal: AbortSignal },
): Promise<{ storageKey: string; contentType: string; sizeBytes: number }> {
  let url: URL;
  try {
    url = new URL(args.sourceUrl);
  } catch (error) {
    throw new DownloadError(`RecordingUrl is not a URL`, true, { cause: error });
  }
  if (!settings.allowedOrigins.includes(url.origin)) {
    throw new DownloadError(`refusing to send Twilio credentials to ${url.origin}`, true);
  }
  if (!/\.(wav|mp3|json)$/i.test(url.pathname)) url.pathname += `.${settings.format}`;

  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: `Basic ${Buffer.from(`${settings.accountSid}:${settings.authToken}`).toString('base64')}` },
      signal: AbortSignal.any([args.signal, AbortSignal.timeout(settings.timeoutMs)]),
      redirect: 'follow',
    });
  } catch (error) {
    throw new DownloadError(`download failed: ${describe(error)}`, false, { cause: error });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    throw new DownloadError(`download answered HTTP ${response.status}`, false);
  }
  const contentType = (response.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const extension = EXTENSIONS[contentType];
  if (!extension) {
    await response.body.cancel().catch(() => {});
    throw new DownloadError(`the recording is not audio we accept (content-type ${contentType || 'missing'})`, true);
  }
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > settings.maxBytes) {
    await response.body.cancel().catch(() => {});
    throw new DownloadError(`the recording is ${declared} bytes, over the ${settings.maxBytes}-byte limit`, true);
  }
  const storageKey = `recordings/${args.recordingId}.${extension}`;
  try {
    const { sizeBytes } = await storage.put(storageKey, response.body as unknown as AsyncIterable<Uint8Array>, { maxBytes: settings.maxBytes });
    return { storageKey, contentType, sizeBytes };
  } catch (error) {
    if (error instanceof MediaTooLargeError) throw new DownloadError(error.message, true, { cause: error });
    if (error instanceof MediaStorageError) throw new DownloadError(`storing the recording failed: ${error.message}`, false, { cause: error });
    throw new DownloadError(`download broke off: ${describe(error)}`, false, { cause: error });
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  const code = cause && typeof cause === 'object' && 'code' in cause ? ` (${String((cause as { code: unknown }).code)})` : '';
  return `${error.message}${code}`;
}
