import type { Channel } from '../core/types.ts';
import { interleaveLogs, type LogEntry } from '../core/merge.ts';
import type { Db, Queryable } from './db.ts';
import { notifyActivity, notifyOutbox } from './notify.ts';
import { nextSeq } from './patients.ts';

/**
 * Identity linking and reversible patient merges. The model and its reasons are in docs/ARCHITECTURE.md §3:
 * a merge renumbers both logs into the survivor's one `seq` (interleaved by time, each log's own order kept),
 * remembers every row's original (patient, seq), and an undo puts every row back.
 */

export interface IdentityRow {
  id: string;
  patientId: string;
  channel: Channel;
  address: string;
  lastInboundAt: Date | null;
  createdAt: Date;
}

const toIdentity = (row: { id: string; patient_id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date }): IdentityRow => ({
  id: row.id,
  patientId: row.patient_id,
  channel: row.channel,
  address: row.address,
  lastInboundAt: row.last_inbound_at,
  createdAt: row.created_at,
});

export async function listIdentities(db: Queryable, patientId: string): Promise<IdentityRow[]> {
  const result = await db.query<{ id: string; patient_id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date }>(
    `SELECT id, patient_id, channel, address, last_inbound_at, created_at FROM channel_identities WHERE patient_id = $1 ORDER BY created_at, id`,
    [patientId],
  );
  return result.rows.map(toIdentity);
}

export type LinkResult =
  | { linked: true; identity: IdentityRow; seq: number }
  | { linked: false; identity: IdentityRow; alreadyLinked: true }
  | { error: 'identity_taken'; otherPatientId: string };

class LinkRace extends Error {}

/** Links `(channel, address)` (already normalised) to a patient, appending an `identity_linked` event to its log. */
export async function linkIdentity(db: Db, args: { patientId: string; channel: Channel; address: string; actorId: string }): Promise<LinkResult> {
  for (;;) {
    try {
      return await db.transaction(async (tx): Promise<LinkResult> => {
        const existing = await tx.query<{ id: string; patient_id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date }>(
          `SELECT * FROM channel_identities WHERE channel = $1 AND address = $2`,
          [args.channel, args.address],
        );
        const found = existing.rows[0];
        if (found && found.patient_id === args.patientId) return { linked: false, identity: toIdentity(found), alreadyLinked: true };
        if (found) return { error: 'identity_taken', otherPatientId: found.patient_id };
        const seq = await nextSeq(tx, args.patientId, 'event');
        const inserted = await tx.query<{ id: string; patient_id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date }>(
          `INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, $2, $3) ON CONFLICT (channel, address) DO NOTHING RETURNING *`,
          [args.patientId, args.channel, args.address],
        );
        const identity = inserted.rows[0];
        // Someone took the address between our look-up and insert: start again so the answer is the truth.
        if (!identity) throw new LinkRace();
        await tx.query(`INSERT INTO patient_events (patient_id, seq, kind, actor_id, detail) VALUES ($1, $2, 'identity_linked', $3, $4)`, [
          args.patientId,
          seq,
          args.actorId,
          JSON.stringify({ identityId: identity.id, channel: args.channel, address: args.address }),
        ]);
        await notifyActivity(tx, args.patientId, 'identity');
        return { linked: true, identity: toIdentity(identity), seq };
      });
    } catch (error) {
      if (!(error instanceof LinkRace)) throw error;
    }
  }
}

interface PatientSnapshot {
  lastSeq: number;
  waitingSince: string | null;
  lastMessageAt: string | null;
  assignment: AssignmentSnapshot | null;
}

interface AssignmentSnapshot {
  coordinatorId: string | null;
  teamId: string | null;
  assignedAt: string;
}

async function lockPatients(tx: Queryable, ids: readonly string[]) {
  // Always in id order, so two merges over the same pair cannot deadlock.
  const result = await tx.query<{ id: string; last_seq: number; waiting_since: Date | null; last_message_at: Date | null; merged_into: string | null }>(
    `SELECT id, last_seq, waiting_since, last_message_at, merged_into FROM patients WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`,
    [ids],
  );
  return new Map(result.rows.map((row) => [row.id, row]));
}

async function readAssignment(tx: Queryable, patientId: string): Promise<AssignmentSnapshot | null> {
  const result = await tx.query<{ coordinator_id: string | null; team_id: string | null; assigned_at: Date }>(
    `SELECT coordinator_id, team_id, assigned_at FROM assignments WHERE patient_id = $1`,
    [patientId],
  );
  const row = result.rows[0];
  return row ? { coordinatorId: row.coordinator_id, teamId: row.team_id, assignedAt: row.assigned_at.toISOString() } : null;
}

async function writeAssignment(tx: Queryable, patientId: string, assignment: AssignmentSnapshot | null): Promise<void> {
  if (!assignment) {
    await tx.query(`DELETE FROM assignments WHERE patient_id = $1`, [patientId]);
    return;
  }
  await tx.query(
    `INSERT INTO assignments (patient_id, coordinator_id, team_id, assigned_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (patient_id) DO UPDATE SET coordinator_id = EXCLUDED.coordinator_id, team_id = EXCLUDED.team_id, assigned_at = EXCLUDED.assigned_at`,
    [patientId, assignment.coordinatorId, assignment.teamId, assignment.assignedAt],
  );
}

const sameAssignment = (a: AssignmentSnapshot | null, b: AssignmentSnapshot | null) =>
  a === b || (a !== null && b !== null && a.coordinatorId === b.coordinatorId && a.teamId === b.teamId && a.assignedAt === b.assignedAt);

async function readLog(tx: Queryable, patientId: string): Promise<Array<LogEntry & { identityId: string | null }>> {
  const result = await tx.query<{ kind: 'message' | 'event'; id: string; seq: number; created_at: Date; identity_id: string | null }>(
    `SELECT 'message' AS kind, id, seq, created_at, identity_id FROM messages WHERE patient_id = $1
     UNION ALL
     SELECT 'event' AS kind, id, seq, created_at, NULL AS identity_id FROM patient_events WHERE patient_id = $1
     ORDER BY seq`,
    [patientId],
  );
  return result.rows.map((row) => ({ kind: row.kind, id: row.id, seq: row.seq, at: row.created_at, identityId: row.identity_id }));
}

/**
 * Moves log rows to (patient, seq) in two steps: first to unique negative seqs, then flipped. PostgreSQL checks a
 * non-deferred unique index row by row, so renumbering in place in one step could collide with itself.
 */
async function placeRows(tx: Queryable, placements: ReadonlyArray<{ kind: 'message' | 'event'; id: string; patientId: string; seq: number }>): Promise<void> {
  for (const [kind, table] of [
    ['message', 'messages'],
    ['event', 'patient_events'],
  ] as const) {
    const rows = placements.filter((p) => p.kind === kind);
    if (rows.length === 0) continue;
    await tx.query(
      `UPDATE ${table} t SET patient_id = r.patient_id, seq = -r.seq
       FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS r(id, patient_id, seq) WHERE t.id = r.id`,
      [rows.map((r) => r.id), rows.map((r) => r.patientId), rows.map((r) => r.seq)],
    );
  }
  const patients = [...new Set(placements.map((p) => p.patientId))];
  await tx.query(`UPDATE messages SET seq = -seq WHERE patient_id = ANY($1::uuid[]) AND seq < 0`, [patients]);
  await tx.query(`UPDATE patient_events SET seq = -seq WHERE patient_id = ANY($1::uuid[]) AND seq < 0`, [patients]);
  // The outbox orders each patient's sends by its own copy of (patient_id, seq): keep it equal to the message's.
  await tx.query(
    `UPDATE outbox o SET patient_id = m.patient_id, seq = m.seq FROM messages m
     WHERE o.message_id = m.id AND m.patient_id = ANY($1::uuid[]) AND (o.patient_id <> m.patient_id OR o.seq <> m.seq)`,
    [patients],
  );
}

/** The oldest inbound message not yet followed by a human reply, and the latest message time, from the log itself. */
async function recomputeClocks(tx: Queryable, patientId: string): Promise<void> {
  await tx.query(
    `UPDATE patients p SET
       waiting_since = (SELECT min(m.created_at) FROM messages m WHERE m.patient_id = p.id AND m.direction = 'inbound'
                          AND m.seq > COALESCE((SELECT max(r.seq) FROM messages r WHERE r.patient_id = p.id AND r.direction = 'outbound'
                                                  AND r.author_id IS NOT NULL AND NOT r.automatic), 0)),
       last_message_at = (SELECT max(m.created_at) FROM messages m WHERE m.patient_id = p.id)
     WHERE p.id = $1`,
    [patientId],
  );
}

export type MergeResult =
  | { mergeId: string; survivorId: string; absorbedId: string; seq: number; messagesMoved: number; eventsMoved: number; identitiesMoved: number }
  | { error: 'not_found' | 'already_merged' | 'idempotency_conflict' };

/**
 * Merges `absorbedId` into `survivorId` in one transaction: both logs become the survivor's log, interleaved by
 * time; the absorbed patient's identities, outbox rows and (if the survivor has none) assignment move over; the
 * absorbed patient row stays, marked `merged_into`, so an undo can restore it under the same id.
 */
export async function mergePatients(db: Db, args: { survivorId: string; absorbedId: string; actorId: string }): Promise<MergeResult> {
  return db.transaction(async (tx): Promise<MergeResult> => {
    const locked = await lockPatients(tx, [args.survivorId, args.absorbedId]);
    const survivor = locked.get(args.survivorId);
    const absorbed = locked.get(args.absorbedId);
    if (!survivor || !absorbed) return { error: 'not_found' };
    if (survivor.merged_into || absorbed.merged_into) return { error: 'already_merged' };
    const clash = await tx.query(
      `SELECT 1 FROM messages a JOIN messages b ON a.idempotency_key = b.idempotency_key
       WHERE a.patient_id = $1 AND b.patient_id = $2 LIMIT 1`,
      [args.survivorId, args.absorbedId],
    );
    if (clash.rowCount > 0) return { error: 'idempotency_conflict' };

    const survivorAssignment = await readAssignment(tx, args.survivorId);
    const absorbedAssignment = await readAssignment(tx, args.absorbedId);
    const snapshot = (p: typeof survivor, assignment: AssignmentSnapshot | null): PatientSnapshot => ({
      lastSeq: p.last_seq,
      waitingSince: p.waiting_since?.toISOString() ?? null,
      lastMessageAt: p.last_message_at?.toISOString() ?? null,
      assignment,
    });

    const survivorLog = await readLog(tx, args.survivorId);
    const absorbedLog = await readLog(tx, args.absorbedId);
    const placed = interleaveLogs(survivorLog, absorbedLog);
    const identities = await listIdentities(tx, args.absorbedId);

    const merge = await tx.query<{ id: string }>(
      `INSERT INTO patient_merges (survivor_id, absorbed_id, merged_by, survivor_before, absorbed_before, merged_last_seq)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
      [args.survivorId, args.absorbedId, args.actorId, JSON.stringify(snapshot(survivor, survivorAssignment)), JSON.stringify(snapshot(absorbed, absorbedAssignment)), placed.length + 1],
    );
    const mergeId = merge.rows[0]!.id;
    const original = new Map([...survivorLog, ...absorbedLog].map((e) => [`${e.kind}:${e.id}`, e.seq]));
    await tx.query(
      `INSERT INTO patient_merge_rows (merge_id, row_kind, row_id, original_patient_id, original_seq)
       SELECT $1, r.kind, r.id, r.patient_id, r.seq FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::int[]) AS r(kind, id, patient_id, seq)`,
      [
        mergeId,
        [...placed.map((p) => p.kind), ...identities.map(() => 'identity')],
        [...placed.map((p) => p.id), ...identities.map((i) => i.id)],
        [...placed.map((p) => (p.from === 'survivor' ? args.survivorId : args.absorbedId)), ...identities.map(() => args.absorbedId)],
        [...placed.map((p) => original.get(`${p.kind}:${p.id}`)!), ...identities.map(() => null)],
      ],
    );

    await placeRows(tx, placed.map((p) => ({ kind: p.kind, id: p.id, patientId: args.survivorId, seq: p.newSeq })));
    await tx.query(`UPDATE channel_identities SET patient_id = $1 WHERE patient_id = $2`, [args.survivorId, args.absorbedId]);

    let assignmentAfter = survivorAssignment;
    if (!survivorAssignment && absorbedAssignment) {
      assignmentAfter = absorbedAssignment;
      await writeAssignment(tx, args.survivorId, absorbedAssignment);
    }
    await writeAssignment(tx, args.absorbedId, null);
    await tx.query(`UPDATE patient_merges SET survivor_assignment_after = $2 WHERE id = $1`, [mergeId, JSON.stringify(assignmentAfter)]);

    await tx.query(`UPDATE patients SET last_seq = $2 WHERE id = $1`, [args.survivorId, placed.length]);
    await recomputeClocks(tx, args.survivorId);
    await tx.query(`UPDATE patients SET merged_into = $1, waiting_since = NULL WHERE id = $2`, [args.survivorId, args.absorbedId]);

    const messagesMoved = placed.filter((p) => p.from === 'absorbed' && p.kind === 'message').length;
    const eventsMoved = placed.filter((p) => p.from === 'absorbed' && p.kind === 'event').length;
    const seq = await nextSeq(tx, args.survivorId, 'event');
    await tx.query(`INSERT INTO patient_events (patient_id, seq, kind, actor_id, detail) VALUES ($1, $2, 'merged', $3, $4)`, [
      args.survivorId,
      seq,
      args.actorId,
      JSON.stringify({ mergeId, absorbedPatientId: args.absorbedId, identities: identities.map((i) => ({ channel: i.channel, address: i.address })), messagesMoved, eventsMoved }),
    ]);
    await notifyActivity(tx, args.survivorId, 'merge');
    await notifyActivity(tx, args.absorbedId, 'merge');
    await notifyOutbox(tx);
    return { mergeId, survivorId: args.survivorId, absorbedId: args.absorbedId, seq, messagesMoved, eventsMoved, identitiesMoved: identities.length };
  });
}

export type UndoResult =
  | { mergeId: string; survivorId: string; absorbedId: string; survivorSeq: number; absorbedSeq: number; movedToAbsorbed: number }
  | { error: 'not_found' | 'already_undone' | 'merge_not_latest' };

/**
 * Undoes a merge exactly: every row the merge moved or renumbered goes back to its original (patient, seq); the
 * absorbed patient's identities and assignment come back. Rows written after the merge are kept, appended after
 * each patient's restored log in the order they were written: a message goes to whichever patient now owns the
 * identity it used, everything else (events, messages on the survivor's identities) stays with the survivor.
 * Merges undo last-first: a survivor that has absorbed someone since, or been absorbed, answers `merge_not_latest`.
 */
export async function undoMerge(db: Db, args: { mergeId: string; actorId: string }): Promise<UndoResult> {
  return db.transaction(async (tx): Promise<UndoResult> => {
    const found = await tx.query<{ survivor_id: string; absorbed_id: string; merged_at: Date; undone_at: Date | null; survivor_before: PatientSnapshot; absorbed_before: PatientSnapshot; survivor_assignment_after: AssignmentSnapshot | null }>(
      `SELECT survivor_id, absorbed_id, merged_at, undone_at, survivor_before, absorbed_before, survivor_assignment_after FROM patient_merges WHERE id = $1 FOR UPDATE`,
      [args.mergeId],
    );
    const merge = found.rows[0];
    if (!merge) return { error: 'not_found' };
    if (merge.undone_at) return { error: 'already_undone' };
    const survivorId = merge.survivor_id;
    const absorbedId = merge.absorbed_id;
    const locked = await lockPatients(tx, [survivorId, absorbedId]);
    if (locked.get(survivorId)?.merged_into || locked.get(absorbedId)?.merged_into !== survivorId) return { error: 'merge_not_latest' };
    const later = await tx.query(
      `SELECT 1 FROM patient_merges WHERE survivor_id = $1 AND id <> $2 AND undone_at IS NULL AND merged_at >= $3 LIMIT 1`,
      [survivorId, args.mergeId, merge.merged_at],
    );
    if (later.rowCount > 0) return { error: 'merge_not_latest' };

    const mapped = await tx.query<{ row_kind: 'message' | 'event' | 'identity'; row_id: string; original_patient_id: string; original_seq: number | null }>(
      `SELECT row_kind, row_id, original_patient_id, original_seq FROM patient_merge_rows WHERE merge_id = $1`,
      [args.mergeId],
    );
    const originals = new Map(mapped.rows.map((r) => [`${r.row_kind}:${r.row_id}`, r]));
    const returningIdentities = new Set(mapped.rows.filter((r) => r.row_kind === 'identity').map((r) => r.row_id));

    const log = await readLog(tx, survivorId);
    const placements: Array<{ kind: 'message' | 'event'; id: string; patientId: string; seq: number }> = [];
    let survivorNext = merge.survivor_before.lastSeq;
    let absorbedNext = merge.absorbed_before.lastSeq;
    let movedToAbsorbed = 0;
    let survivorGotNewMessages = false;
    for (const entry of log) {
      const was = originals.get(`${entry.kind}:${entry.id}`);
      if (was) {
        placements.push({ kind: entry.kind, id: entry.id, patientId: was.original_patient_id, seq: was.original_seq! });
      } else if (entry.kind === 'message' && entry.identityId && returningIdentities.has(entry.identityId)) {
        placements.push({ kind: entry.kind, id: entry.id, patientId: absorbedId, seq: ++absorbedNext });
        movedToAbsorbed += 1;
      } else {
        placements.push({ kind: entry.kind, id: entry.id, patientId: survivorId, seq: ++survivorNext });
        if (entry.kind === 'message') survivorGotNewMessages = true;
      }
    }
    await placeRows(tx, placements);
    await tx.query(`UPDATE channel_identities SET patient_id = $1 WHERE id = ANY($2::uuid[])`, [absorbedId, [...returningIdentities]]);

    const currentAssignment = await readAssignment(tx, survivorId);
    if (sameAssignment(currentAssignment, merge.survivor_assignment_after)) await writeAssignment(tx, survivorId, merge.survivor_before.assignment);
    await writeAssignment(tx, absorbedId, merge.absorbed_before.assignment);

    const restore = async (patientId: string, before: PatientSnapshot, lastSeq: number, recompute: boolean) => {
      await tx.query(`UPDATE patients SET last_seq = $2, waiting_since = $3, last_message_at = $4, merged_into = NULL WHERE id = $1`, [
        patientId,
        lastSeq,
        before.waitingSince,
        before.lastMessageAt,
      ]);
      if (recompute) await recomputeClocks(tx, patientId);
    };
    await restore(survivorId, merge.survivor_before, survivorNext, survivorGotNewMessages);
    await restore(absorbedId, merge.absorbed_before, absorbedNext, movedToAbsorbed > 0);

    const detail = JSON.stringify({ mergeId: args.mergeId, survivorPatientId: survivorId, absorbedPatientId: absorbedId, movedToAbsorbed });
    const survivorSeq = await nextSeq(tx, survivorId, 'event');
    await tx.query(`INSERT INTO patient_events (patient_id, seq, kind, actor_id, detail) VALUES ($1, $2, 'merge_undone', $3, $4)`, [survivorId, survivorSeq, args.actorId, detail]);
    const absorbedSeq = await nextSeq(tx, absorbedId, 'event');
    await tx.query(`INSERT INTO patient_events (patient_id, seq, kind, actor_id, detail) VALUES ($1, $2, 'merge_undone', $3, $4)`, [absorbedId, absorbedSeq, args.actorId, detail]);
    await tx.query(`UPDATE patient_merges SET undone_at = now(), undone_by = $2 WHERE id = $1`, [args.mergeId, args.actorId]);
    await notifyActivity(tx, survivorId, 'merge');
    await notifyActivity(tx, absorbedId, 'merge');
    await notifyOutbox(tx);
    return { mergeId: args.mergeId, survivorId, absorbedId, survivorSeq, absorbedSeq, movedToAbsorbed };
  });
}

export interface MergeRow {
  mergeId: string;
  survivorId: string;
  absorbedId: string;
  mergedBy: string | null;
  mergedAt: Date;
  undoneBy: string | null;
  undoneAt: Date | null;
}

export async function listMerges(db: Queryable, patientId: string): Promise<MergeRow[]> {
  const result = await db.query<{ id: string; survivor_id: string; absorbed_id: string; merged_by: string | null; merged_at: Date; undone_by: string | null; undone_at: Date | null }>(
    `SELECT id, survivor_id, absorbed_id, merged_by, merged_at, undone_by, undone_at FROM patient_merges
     WHERE survivor_id = $1 OR absorbed_id = $1 ORDER BY merged_at DESC, id`,
    [patientId],
  );
  return result.rows.map((row) => ({
    mergeId: row.id,
    survivorId: row.survivor_id,
    absorbedId: row.absorbed_id,
    mergedBy: row.merged_by,
    mergedAt: row.merged_at,
    undoneBy: row.undone_by,
    undoneAt: row.undone_at,
  }));
}

export async function findMerge(db: Queryable, mergeId: string): Promise<{ survivorId: string; absorbedId: string } | null> {
  if (!/^[0-9a-f-]{36}$/i.test(mergeId)) return null;
  const result = await db.query<{ survivor_id: string; absorbed_id: string }>(`SELECT survivor_id, absorbed_id FROM patient_merges WHERE id = $1`, [mergeId]);
  const row = result.rows[0];
  return row ? { survivorId: row.survivor_id, absorbedId: row.absorbed_id } : null;
}
