import type { MediaStorage } from './media-storage.ts';

/** What the web role needs for calls: Twilio credentials (signatures, Calls API), media storage, and the voice prompts. */
export interface CallSettings {
  twilio: {
    accountSid: string;
    authToken: string;
    /** Caller ID for click-to-call; our Twilio voice number. */
    voiceNumber?: string;
    apiBase?: string;
    timeoutMs: number;
  };
  storage: MediaStorage;
  /** Played before a call is put through or a voicemail is taken: both parties are told the call is recorded. */
  recordingNotice: string;
  voicemailGreeting: string;
  dialTimeoutSec: number;
  voicemailMaxSec: number;
  /** Attempts for the durable download job queued by a recording callback. */
  downloadMaxAttempts: number;
  visits: {
    /** How long a patient's join link works. */
    linkTtlMs: number;
    /** RTCPeerConnection iceServers (STUN/TURN) handed to both pages; loopback needs none. */
    iceServers: unknown[];
    maxChunkBytes: number;
    maxRecordingBytes: number;
    transcribeMaxAttempts: number;
  };
}

export const DEFAULT_RECORDING_NOTICE = 'This call is recorded and transcribed for your care record.';
export const DEFAULT_VOICEMAIL_GREETING = 'Your care coordinator is not available right now. Please leave a message after the tone, and we will call you back.';
