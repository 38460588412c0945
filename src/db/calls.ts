import type { Transcript } from '../transcription/transcriber.ts';
import type { Db, Queryable } from './db.ts';
import { notifyActivity } from './notify.ts';
import { findOrCreateIdentity, nextSeq } from './patients.ts';
import { routeInbound } from './routing.ts';
import { visibleSql, type Viewer } from './visibility.ts';

/** NOTIFY channel that wakes media job workers; sent inside the enqueuing transaction. */
export const MEDIA_JOBS_CHANNEL = 'switchboard_media_jobs';

/**
 * A phone number is one identity whatever the medium: a call is looked up (and, for a new caller, created) as the
 * ('sms', +E164) identity, so a caller who texted before lands on the same patient, and a caller who texts later
 * does too (recordInbound looks up the same row). A call does not move `last_inbound_at`: the reply medium stays
 * the one the patient last *wrote* on, because the number that called may be a landline that cannot take texts.
 */
export const PHONE_IDENTITY_CHANNEL = 'sms';

export type CallRoute = 'dial' | 'voicemail';
export type RecordingKind = 'conversation' | 'voicemail' | 'visit';

export interface CallRow {
  id: string;
  patientId: string;
  seq: number;
  providerCallSid: string | null;
  direction: 'inbound' | 'outbound';
  patientAddress: string;
  ourAddress: string | null;
  coordinatorId: string | null;
  coordinatorPhone: string | null;
  route: CallRoute | null;
  status: string;
}

const toCall = (row: Record<string, any>): CallRow => ({
  id: row.id,
  patientId: row.patient_id,
  seq: row.seq,
  providerCallSid: row.provider_call_sid,
  direction: row.direction,
  patientAddress: row.patient_address,
  ourAddress: row.our_address,
  coordinatorId: row.coordinator_id,
  coordinatorPhone: row.coordinator_phone,
  route: row.route,
  status: row.status,
});

class DuplicateCall extends Error {}

/**
 * Stores an incoming call once per CallSid, in the caller's patient log (creating and assigning the patient for
 * a new number, as a first SMS would). A repeated webhook for the same CallSid finds the first row.
 */
export async function recordInboundCall(
  db: Db,
  args: { callSid: string; from: string; to: string; provider?: string },
): Promise<{ call: CallRow; duplicate: boolean; isNewPatient: boolean }> {
  const provider = args.provider ?? 'twilio';
  const existing = await findCallBySid(db, provider, args.callSid);
  if (existing) return { call: existing, duplicate: true, isNewPatient: false };
  try {
    return await db.transaction(async (tx) => {
      const { patientId, isNewPatient } = await findOrCreateIdentity(tx, PHONE_IDENTITY_CHANNEL, args.from);
      // A first contact by phone is routed by the same rules as a first message (a call is one more medium).
      if (isNewPatient) await routeInbound(tx, db.kind, { patientId, messageId: null, message: { body: '', channel: 'voice', media: [] }, now: new Date() });
      const seq = await nextSeq(tx, patientId, 'event');
      const inserted = await tx.query<Record<string, any>>(
        `INSERT INTO calls (patient_id, seq, provider, provider_call_sid, direction, patient_address, our_address, status)
         VALUES ($1, $2, $3, $4, 'inbound', $5, $6, 'ringing')
         ON CONFLICT (provider, provider_call_sid) WHERE provider_call_sid IS NOT NULL DO NOTHING RETURNING *`,
        [patientId, seq, provider, args.callSid, args.from, args.to],
      );
      if (!inserted.rows[0]) throw new DuplicateCall();
      await notifyActivity(tx, patientId, 'call');
      return { call: toCall(inserted.rows[0]), duplicate: false, isNewPatient };
    });
  } catch (error) {
    if (!(error instanceof DuplicateCall)) throw error;
    const winner = await findCallBySid(db, provider, args.callSid);
    if (!winner) throw new Error('duplicate call disappeared', { cause: error });
    return { call: winner, duplicate: true, isNewPatient: false };
  }
}

export async function findCallBySid(db: Queryable, provider: string, callSid: string): Promise<CallRow | null> {
  const result = await db.query<Record<string, any>>(`SELECT * FROM calls WHERE provider = $1 AND provider_call_sid = $2`, [provider, callSid]);
  return result.rows[0] ? toCall(result.rows[0]) : null;
}

export async function findCall(db: Queryable, id: string): Promise<CallRow | null> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return null;
  const result = await db.query<Record<string, any>>(`SELECT * FROM calls WHERE id = $1`, [id]);
  return result.rows[0] ? toCall(result.rows[0]) : null;
}

export interface CoordinatorReach {
  coordinatorId: string;
  phone: string | null;
  status: string;
  timezone: string;
  teams: Array<{ timezone: string; businessHours: unknown; holidays: unknown }>;
}

/** The patient's assigned coordinator and what decides whether a call can be put through to them. */
export async function findCoordinatorReach(db: Queryable, patientId: string): Promise<CoordinatorReach | null> {
  const result = await db.query<{ id: string; phone: string | null; status: string; timezone: string }>(
    `SELECT c.id, c.phone, c.status, c.timezone FROM assignments a JOIN coordinators c ON c.id = a.coordinator_id WHERE a.patient_id = $1`,
    [patientId],
  );
  const row = result.rows[0];
  if (!row) return null;
  const teams = await db.query<{ timezone: string; business_hours: unknown; holidays: unknown }>(
    `SELECT t.timezone, t.business_hours, t.holidays FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.coordinator_id = $1 ORDER BY t.name`,
    [row.id],
  );
  return {
    coordinatorId: row.id,
    phone: row.phone,
    status: row.status,
    timezone: row.timezone,
    teams: teams.rows.map((team) => ({ timezone: team.timezone, businessHours: team.business_hours, holidays: team.holidays })),
  };
}

export async function setCallRoute(db: Queryable, callId: string, args: { route: CallRoute; reason: string; coordinatorId: string | null; coordinatorPhone: string | null }): Promise<void> {
  await db.query(
    `UPDATE calls SET route = $2, route_reason = $3, coordinator_id = COALESCE($4, coordinator_id), coordinator_phone = COALESCE($5, coordinator_phone),
            status = CASE WHEN status IN ('queued', 'ringing') THEN 'in-progress' ELSE status END, updated_at = now()
     WHERE id = $1`,
    [callId, args.route, args.reason, args.coordinatorId, args.coordinatorPhone],
  );
}

export async function recordDialStatus(db: Queryable, callId: string, dialStatus: string, route?: CallRoute, reason?: string): Promise<void> {
  await db.query(
    `UPDATE calls SET dial_status = $2, route = COALESCE($3, route), route_reason = COALESCE($4, route_reason), updated_at = now() WHERE id = $1`,
    [callId, dialStatus, route ?? null, reason ?? null],
  );
}

const FINAL_CALL_STATUSES = ['completed', 'busy', 'failed', 'no-answer', 'canceled'];

/** Applies a call status callback; a call that has ended never goes back to ringing (callbacks may arrive out of order). */
export async function applyCallStatus(db: Queryable, args: { callId: string; status: string; durationSec?: number }): Promise<boolean> {
  const final = FINAL_CALL_STATUSES.includes(args.status);
  const result = await db.query(
    `UPDATE calls SET status = $2, duration_sec = COALESCE($3, duration_sec), ended_at = CASE WHEN $4 THEN COALESCE(ended_at, now()) ELSE ended_at END,
            updated_at = now()
     WHERE id = $1 AND ($4 OR status <> ALL($5::text[]))`,
    [args.callId, args.status, args.durationSec ?? null, final, FINAL_CALL_STATUSES],
  );
  return result.rowCount > 0;
}

/** Writes an outbound (click-to-call) call into the patient's log before the provider is asked to place it. */
export async function createOutboundCall(
  db: Db,
  args: { patientId: string; coordinatorId: string; coordinatorPhone: string; patientAddress: string; ourAddress: string },
): Promise<CallRow> {
  return db.transaction(async (tx) => {
    const seq = await nextSeq(tx, args.patientId, 'event');
    const inserted = await tx.query<Record<string, any>>(
      `INSERT INTO calls (patient_id, seq, direction, patient_address, our_address, coordinator_id, coordinator_phone, route, route_reason, status)
       VALUES ($1, $2, 'outbound', $3, $4, $5, $6, 'dial', 'click-to-call: the coordinator first, then the patient', 'queued') RETURNING *`,
      [args.patientId, seq, args.patientAddress, args.ourAddress, args.coordinatorId, args.coordinatorPhone],
    );
    await notifyActivity(tx, args.patientId, 'call');
    return toCall(inserted.rows[0]!);
  });
}

export async function setProviderCallSid(db: Queryable, callId: string, callSid: string): Promise<void> {
  await db.query(`UPDATE calls SET provider_call_sid = $2, updated_at = now() WHERE id = $1 AND provider_call_sid IS NULL`, [callId, callSid]);
}

export async function failOutboundCall(db: Queryable, callId: string, reason: string): Promise<void> {
  await db.query(`UPDATE calls SET status = 'failed', route_reason = $2, ended_at = now(), updated_at = now() WHERE id = $1`, [callId, reason]);
}

// --- recordings and their jobs --------------------------------------------------------------------------------

export interface RecordingNotice {
  call: CallRow;
  recordingSid: string;
  /** Twilio's RecordingStatus: completed, absent (no audio) or failed. */
  providerStatus: string;
  sourceUrl: string | null;
  kind: RecordingKind;
  durationSec: number | null;
  channels: number | null;
  errorCode: string | null;
  downloadMaxAttempts: number;
  provider?: string;
}

/**
 * Stores a recording once per RecordingSid and, in the same transaction, queues its download: so a recording we
 * answered 200 for is never forgotten, and a repeated callback queues nothing new. A recording the provider
 * reports as absent or failed is stored as failed, with the reason, and queues nothing.
 */
export async function recordRecording(db: Db, notice: RecordingNotice): Promise<{ recordingId: string; duplicate: boolean }> {
  const provider = notice.provider ?? 'twilio';
  return db.transaction(async (tx) => {
    const usable = notice.providerStatus === 'completed' && notice.sourceUrl !== null;
    const failure = usable
      ? null
      : notice.providerStatus === 'absent'
        ? 'the provider recorded no audio (RecordingStatus absent)'
        : `the provider reported the recording as ${notice.providerStatus}${notice.errorCode ? ` (error ${notice.errorCode})` : ''}`;
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO call_recordings (call_id, patient_id, provider, provider_recording_sid, kind, source_url, channels, duration_sec, status, failure_reason)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (provider, provider_recording_sid) DO NOTHING RETURNING id`,
      [notice.call.id, notice.call.patientId, provider, notice.recordingSid, notice.kind, notice.sourceUrl, notice.channels, notice.durationSec, usable ? 'pending' : 'failed', failure],
    );
    const row = inserted.rows[0];
    if (!row) {
      const existing = await tx.query<{ id: string }>(`SELECT id FROM call_recordings WHERE provider = $1 AND provider_recording_sid = $2`, [provider, notice.recordingSid]);
      return { recordingId: existing.rows[0]!.id, duplicate: true };
    }
    if (usable) await enqueueMediaJob(tx, row.id, 'download', notice.downloadMaxAttempts);
    await notifyActivity(tx, notice.call.patientId, 'recording');
    return { recordingId: row.id, duplicate: false };
  });
}

async function enqueueMediaJob(tx: Queryable, recordingId: string, kind: 'download' | 'transcribe', maxAttempts: number): Promise<void> {
  await tx.query(
    `INSERT INTO media_jobs (recording_id, kind, max_attempts) VALUES ($1, $2, $3) ON CONFLICT (recording_id, kind) DO NOTHING`,
    [recordingId, kind, maxAttempts],
  );
  await tx.query(`SELECT pg_notify($1, '')`, [MEDIA_JOBS_CHANNEL]);
}

export interface ClaimedMediaJob {
  jobId: string;
  kind: 'download' | 'transcribe';
  attempts: number;
  maxAttempts: number;
  recordingId: string;
  patientId: string;
  sourceUrl: string | null;
  storageKey: string | null;
  contentType: string | null;
}

/**
 * Claims due jobs: pending ones, and running ones whose lease ran out (their worker died or hung). SKIP LOCKED
 * lets many workers claim at once; each claim counts as an attempt, so a job that keeps killing its worker
 * runs out of attempts instead of looping forever.
 */
export async function claimMediaJobs(db: Queryable, args: { workerId: string; limit: number; leaseMs: number }): Promise<ClaimedMediaJob[]> {
  const result = await db.query<Record<string, any>>(
    `WITH candidates AS (
       SELECT id FROM media_jobs
       WHERE state IN ('pending', 'running') AND next_attempt_at <= now() AND (state = 'pending' OR lease_until < now())
       ORDER BY next_attempt_at
       LIMIT $2
       FOR UPDATE SKIP LOCKED
     ), claimed AS (
       UPDATE media_jobs j SET state = 'running', attempts = j.attempts + 1, claimed_by = $1, lease_until = now() + make_interval(secs => $3)
       FROM candidates c WHERE j.id = c.id
       RETURNING j.id, j.kind, j.attempts, j.max_attempts, j.recording_id
     )
     SELECT claimed.*, r.patient_id, r.source_url, r.storage_key, r.content_type
     FROM claimed JOIN call_recordings r ON r.id = claimed.recording_id`,
    [args.workerId, args.limit, args.leaseMs / 1000],
  );
  return result.rows.map((row) => ({
    jobId: row.id,
    kind: row.kind,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    recordingId: row.recording_id,
    patientId: row.patient_id,
    sourceUrl: row.source_url,
    storageKey: row.storage_key,
    contentType: row.content_type,
  }));
}

const FENCE = `id = $1 AND claimed_by = $2 AND attempts = $3 AND state = 'running'`;
type Fence = { jobId: string; workerId: string; attempts: number };
const fenceParams = (fence: Fence) => [fence.jobId, fence.workerId, fence.attempts];

/** Extends the lease of a job still held; false when it was taken over (the caller must drop its result). */
export async function extendLease(db: Queryable, fence: Fence, leaseMs: number): Promise<boolean> {
  const result = await db.query(`UPDATE media_jobs SET lease_until = now() + make_interval(secs => $4) WHERE ${FENCE}`, [...fenceParams(fence), leaseMs / 1000]);
  return result.rowCount > 0;
}

/** Finishes a download: the recording points at the stored object and its transcription is queued, all or nothing. */
export async function completeDownload(
  db: Db,
  fence: Fence,
  args: { recordingId: string; storageKey: string; contentType: string; sizeBytes: number; transcribeMaxAttempts: number },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const done = await tx.query(`UPDATE media_jobs SET state = 'done', finished_at = now(), last_error = NULL WHERE ${FENCE}`, fenceParams(fence));
    if (done.rowCount === 0) return false;
    await tx.query(
      `UPDATE call_recordings SET status = 'downloaded', storage_key = $2, content_type = $3, size_bytes = $4, updated_at = now() WHERE id = $1`,
      [args.recordingId, args.storageKey, args.contentType, args.sizeBytes],
    );
    await enqueueMediaJob(tx, args.recordingId, 'transcribe', args.transcribeMaxAttempts);
    return true;
  });
}

/** Stores the transcript exactly once: only the attempt that still holds the job can write it. */
export async function completeTranscription(db: Db, fence: Fence, args: { recordingId: string; patientId: string; transcript: Transcript }): Promise<boolean> {
  return db.transaction(async (tx) => {
    const done = await tx.query(`UPDATE media_jobs SET state = 'done', finished_at = now(), last_error = NULL WHERE ${FENCE}`, fenceParams(fence));
    if (done.rowCount === 0) return false;
    const t = args.transcript;
    await tx.query(
      `UPDATE call_recordings SET status = 'transcribed', transcript_text = $2, transcript_segments = $3, transcript_engine = $4,
              transcript_empty_reason = $5, transcript_search = to_tsvector('english', $2),
              duration_sec = COALESCE(duration_sec, $6), updated_at = now()
       WHERE id = $1`,
      [args.recordingId, t.text, JSON.stringify(t.segments), t.engine, t.emptyReason ?? null, t.durationSec > 0 ? Math.round(t.durationSec) : null],
    );
    await notifyActivity(tx, args.patientId, 'transcript');
    return true;
  });
}

export async function retryMediaJob(db: Queryable, fence: Fence, args: { delayMs: number; error: string }): Promise<boolean> {
  const result = await db.query(
    `UPDATE media_jobs SET state = 'pending', claimed_by = NULL, lease_until = NULL, last_error = $4,
            next_attempt_at = now() + make_interval(secs => $5)
     WHERE ${FENCE}`,
    [...fenceParams(fence), args.error, args.delayMs / 1000],
  );
  return result.rowCount > 0;
}

/** Gives up on a job; the recording shows as failed, with the reason, in the timeline. */
export async function failMediaJob(db: Db, fence: Fence, args: { recordingId: string; patientId: string; reason: string }): Promise<boolean> {
  return db.transaction(async (tx) => {
    const done = await tx.query(`UPDATE media_jobs SET state = 'failed', finished_at = now(), last_error = $4 WHERE ${FENCE}`, [...fenceParams(fence), args.reason]);
    if (done.rowCount === 0) return false;
    await tx.query(`UPDATE call_recordings SET status = 'failed', failure_reason = $2, updated_at = now() WHERE id = $1`, [args.recordingId, args.reason]);
    await notifyActivity(tx, args.patientId, 'recording');
    return true;
  });
}

export interface MediaJobRow {
  kind: string;
  state: string;
  attempts: number;
  lastError: string | null;
}

export async function listMediaJobs(db: Queryable, recordingId: string): Promise<MediaJobRow[]> {
  const result = await db.query<{ kind: string; state: string; attempts: number; last_error: string | null }>(
    `SELECT kind, state, attempts, last_error FROM media_jobs WHERE recording_id = $1 ORDER BY created_at`,
    [recordingId],
  );
  return result.rows.map((row) => ({ kind: row.kind, state: row.state, attempts: row.attempts, lastError: row.last_error }));
}

// --- reading ---------------------------------------------------------------------------------------------------

export interface RecordingItem {
  id: string;
  kind: RecordingKind;
  status: string;
  failureReason: string | null;
  durationSec: number | null;
  channels: number | null;
  contentType: string | null;
  sizeBytes: number | null;
  /** The authorised, audited, range-capable media URL (relative to the API). */
  mediaUrl: string | null;
  transcript: { text: string; segments: Array<{ startSec: number; endSec: number; text: string }>; engine: string; emptyReason: string | null } | null;
}

export interface CallTimelineItem {
  type: 'call';
  seq: number;
  id: string;
  at: Date;
  direction: 'inbound' | 'outbound';
  status: string;
  route: CallRoute | null;
  routeReason: string | null;
  dialStatus: string | null;
  durationSec: number | null;
  endedAt: Date | null;
  participants: { patient: string; ourNumber: string | null; coordinatorId: string | null; coordinatorPhone: string | null };
  recordings: RecordingItem[];
}

export interface VisitTimelineItem {
  type: 'visit';
  seq: number;
  id: string;
  at: Date;
  status: string;
  coordinatorId: string;
  consent: { coordinatorAt: Date | null; patientAt: Date | null };
  startedAt: Date | null;
  endedAt: Date | null;
  durationSec: number | null;
  recordings: RecordingItem[];
}

/** The patient's calls and video visits on one timeline page (same paging rule as messages and events), with recordings and transcripts. */
export async function readCallItems(db: Queryable, args: { patientId: string; beforeSeq?: number; limit: number }): Promise<Array<CallTimelineItem | VisitTimelineItem>> {
  const params = [args.patientId, args.beforeSeq ?? null, args.limit];
  const [calls, visits] = await Promise.all([
    db.query<Record<string, any>>(`SELECT * FROM calls WHERE patient_id = $1 AND ($2::int IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`, params),
    db.query<Record<string, any>>(`SELECT * FROM visits WHERE patient_id = $1 AND ($2::int IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`, params),
  ]);
  if (calls.rows.length === 0 && visits.rows.length === 0) return [];
  const recordings = await db.query<Record<string, any>>(
    `SELECT * FROM call_recordings WHERE call_id = ANY($1::uuid[]) OR visit_id = ANY($2::uuid[]) ORDER BY created_at, id`,
    [calls.rows.map((row) => row.id), visits.rows.map((row) => row.id)],
  );
  const visitItems = visits.rows.map(
    (v): VisitTimelineItem => ({
      type: 'visit',
      seq: v.seq,
      id: v.id,
      at: v.created_at,
      status: v.status,
      coordinatorId: v.coordinator_id,
      consent: { coordinatorAt: v.coordinator_consent_at, patientAt: v.patient_consent_at },
      startedAt: v.started_at,
      endedAt: v.ended_at,
      durationSec: v.started_at && v.ended_at ? Math.round((v.ended_at.getTime() - v.started_at.getTime()) / 1000) : null,
      recordings: recordings.rows.filter((r) => r.visit_id === v.id).map(toRecordingItem),
    }),
  );
  const callItems = calls.rows.map((c): CallTimelineItem => ({
    type: 'call',
    seq: c.seq,
    id: c.id,
    at: c.started_at,
    direction: c.direction,
    status: c.status,
    route: c.route,
    routeReason: c.route_reason,
    dialStatus: c.dial_status,
    durationSec: c.duration_sec,
    endedAt: c.ended_at,
    participants: { patient: c.patient_address, ourNumber: c.our_address, coordinatorId: c.coordinator_id, coordinatorPhone: c.coordinator_phone },
    recordings: recordings.rows.filter((r) => r.call_id === c.id).map(toRecordingItem),
  }));
  return [...callItems, ...visitItems];
}

function toRecordingItem(r: Record<string, any>): RecordingItem {
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    failureReason: r.failure_reason,
    durationSec: r.duration_sec,
    channels: r.channels,
    contentType: r.content_type,
    sizeBytes: r.size_bytes === null ? null : Number(r.size_bytes),
    mediaUrl: r.storage_key ? `/api/recordings/${r.id}/media` : null,
    transcript:
      r.status === 'transcribed'
        ? { text: r.transcript_text ?? '', segments: r.transcript_segments ?? [], engine: r.transcript_engine, emptyReason: r.transcript_empty_reason }
        : null,
  };
}

export async function findRecordingMedia(
  db: Queryable,
  recordingId: string,
): Promise<{ patientId: string; storageKey: string | null; contentType: string | null } | null> {
  if (!/^[0-9a-f-]{36}$/i.test(recordingId)) return null;
  const result = await db.query<{ patient_id: string; storage_key: string | null; content_type: string | null }>(
    `SELECT patient_id, storage_key, content_type FROM call_recordings WHERE id = $1`,
    [recordingId],
  );
  const row = result.rows[0];
  return row ? { patientId: row.patient_id, storageKey: row.storage_key, contentType: row.content_type } : null;
}

// --- search ----------------------------------------------------------------------------------------------------

export interface SearchHit {
  type: 'message' | 'transcript';
  patientId: string;
  seq: number;
  id: string;
  callId: string | null;
  at: Date;
  /** The matching text with matches wrapped in «…». */
  snippet: string;
  rank: number;
}

/**
 * Full-text search (PostgreSQL's english configuration: stemmed, stop words dropped; `websearch_to_tsquery`
 * syntax: words, "phrases", -exclusions, or) over message bodies and call transcripts, limited to the patients
 * assigned to `coordinatorId` (null: every patient, for supervisors and admins).
 */
/** Search over the patients the viewer may see now (visibility.ts: admins all, supervisors their teams, coordinators theirs and their teams' queues). */
export async function searchPatientContent(db: Queryable, args: { q: string; viewer: Viewer; limit: number }): Promise<SearchHit[]> {
  const result = await db.query<Record<string, any>>(
    `WITH q AS (SELECT websearch_to_tsquery('english', $1) AS query),
     visible AS (SELECT p.id FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id WHERE p.merged_into IS NULL AND ${visibleSql('$2::uuid', '$4::text')})
     SELECT * FROM (
       SELECT 'message' AS type, m.patient_id, m.seq, m.id, NULL::uuid AS call_id, m.created_at AS at,
              ts_headline('english', m.body, q.query, 'StartSel=«, StopSel=», MaxFragments=2') AS snippet,
              ts_rank(to_tsvector('english', m.body), q.query) AS rank
       FROM messages m, q WHERE m.patient_id IN (SELECT id FROM visible) AND to_tsvector('english', m.body) @@ q.query
       UNION ALL
       SELECT 'transcript', r.patient_id, COALESCE(c.seq, v.seq), r.id, r.call_id, COALESCE(c.started_at, v.created_at),
              ts_headline('english', r.transcript_text, q.query, 'StartSel=«, StopSel=», MaxFragments=2'),
              ts_rank(r.transcript_search, q.query)
       FROM call_recordings r LEFT JOIN calls c ON c.id = r.call_id LEFT JOIN visits v ON v.id = r.visit_id, q
       WHERE r.patient_id IN (SELECT id FROM visible) AND r.transcript_search @@ q.query
     ) hits
     ORDER BY rank DESC, at DESC
     LIMIT $3`,
    [args.q, args.viewer.id, args.limit, args.viewer.role],
  );
  return result.rows.map((row) => ({
    type: row.type,
    patientId: row.patient_id,
    seq: row.seq,
    id: row.id,
    callId: row.call_id,
    at: row.at,
    snippet: row.snippet,
    rank: Number(row.rank),
  }));
}
