import type { Db, Queryable } from './db.ts';
import { notifyActivity } from './notify.ts';
import { nextSeq } from './patients.ts';
import { supervisedTeamsSql, type Viewer } from './visibility.ts';

export type ConversationFilter = 'all' | 'mine' | 'unread' | 'waiting' | 'team';

export interface ConversationRow {
  patientId: string;
  displayName: string | null;
  address: string | null;
  waitingSince: Date | null;
  lastMessageAt: Date | null;
  priority: number;
  tags: string[];
  coordinatorId: string | null;
  teamId: string | null;
  unread: number;
  lastSeq: number;
  lastMessage: { body: string; direction: string; channel: string; status: string; at: Date; automatic: boolean } | null;
}

/** LIKE matches the text literally: %, _ and \ in a search are not wildcards. */
const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** Unread counts stop at this; the UI shows "99+". */
export const UNREAD_CAP = 99;

/**
 * The caller's conversations, oldest unanswered inbound first (then most recent activity). The page is chosen
 * first on patients + assignments alone (indexed), and only its rows get a preview, an address and an unread count.
 */
export async function listConversations(
  db: Queryable,
  viewer: Viewer,
  args: { filter: ConversationFilter; q?: string; limit: number },
): Promise<ConversationRow[]> {
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const me = param(viewer.id);
  const limit = param(args.limit);
  const visible = await visibleAssignmentsSql(db, viewer, me, param);
  const where: string[] = ['true'];
  if (args.filter === 'mine') where.push(`v.coordinator_id = ${me}::uuid`);
  if (args.filter === 'team') where.push('v.coordinator_id IS NULL AND v.team_id IS NOT NULL');
  if (args.filter === 'waiting') where.push('p.waiting_since IS NOT NULL');
  if (args.filter === 'unread') {
    where.push(`EXISTS (SELECT 1 FROM messages m WHERE m.patient_id = p.id AND m.direction = 'inbound' AND m.seq > COALESCE(rp.seq, 0))`);
  }
  const q = args.q?.trim();
  if (q) {
    const like = param(likePattern(q));
    const words = param(q);
    const digits = q.replace(/[^\d]/g, '');
    const phone = digits.length >= 3 ? `OR EXISTS (SELECT 1 FROM channel_identities ci WHERE ci.patient_id = p.id AND ci.address LIKE '%' || ${param(digits)} || '%')` : '';
    where.push(`(p.display_name ILIKE ${like}
      OR EXISTS (SELECT 1 FROM channel_identities ci WHERE ci.patient_id = p.id AND ci.address ILIKE ${like})
      ${phone}
      OR EXISTS (SELECT 1 FROM messages m WHERE m.patient_id = p.id AND to_tsvector('simple', m.body) @@ plainto_tsquery('simple', ${words})))`);
  }
  const result = await db.query<Record<string, any>>(
    `WITH v AS (${visible}),
     page AS (
       SELECT p.id, p.display_name, p.waiting_since, p.last_message_at, p.priority, p.tags, p.last_seq,
              v.coordinator_id, v.team_id, COALESCE(rp.seq, 0) AS read_seq
       -- One primary-key probe per visible patient (OFFSET 0 keeps the planner from turning it into a scan of
       -- every patient); the visible set is the viewer's own, usually a few hundred.
       FROM v CROSS JOIN LATERAL (SELECT * FROM patients WHERE id = v.patient_id AND merged_into IS NULL OFFSET 0) p
       LEFT JOIN read_positions rp ON rp.coordinator_id = ${me}::uuid AND rp.patient_id = p.id
       WHERE ${where.join(' AND ')}
       ORDER BY p.waiting_since ASC NULLS LAST, p.last_message_at DESC NULLS LAST, p.id
       LIMIT ${limit})
     SELECT page.*, lm.body, lm.direction, lm.channel, lm.status, lm.created_at AS lm_at, lm.automatic,
            (SELECT count(*)::int FROM (SELECT 1 FROM messages m WHERE m.patient_id = page.id AND m.direction = 'inbound'
                                         AND m.seq > page.read_seq LIMIT ${UNREAD_CAP}) u) AS unread,
            COALESCE(lm.address, (SELECT ci.address FROM channel_identities ci WHERE ci.patient_id = page.id
                                  ORDER BY ci.last_inbound_at DESC NULLS LAST, ci.created_at DESC LIMIT 1)) AS address
     FROM page
     LEFT JOIN LATERAL (SELECT body, direction, channel, status, created_at, automatic, address FROM messages m
                        WHERE m.patient_id = page.id ORDER BY m.seq DESC LIMIT 1) lm ON true
     ORDER BY page.waiting_since ASC NULLS LAST, page.last_message_at DESC NULLS LAST, page.id`,
    params,
  );
  return result.rows.map((row) => ({
    patientId: row.id,
    displayName: row.display_name,
    address: row.address,
    waitingSince: row.waiting_since,
    lastMessageAt: row.last_message_at,
    priority: row.priority,
    tags: row.tags ?? [],
    coordinatorId: row.coordinator_id,
    teamId: row.team_id,
    unread: row.unread,
    lastSeq: row.last_seq,
    lastMessage:
      row.body === null || row.body === undefined
        ? null
        : { body: row.body, direction: row.direction, channel: row.channel, status: row.status, at: row.lm_at, automatic: row.automatic },
  }));
}

/**
 * The viewer's visible (patient_id, coordinator_id, team_id) rows as a UNION of index scans: `visibleSql`'s rule
 * (visibility.ts) specialised to the viewer's team memberships, read first. One OR-ed predicate would make
 * PostgreSQL scan every assignment; this keeps the inbox proportional to the viewer's own patients.
 */
async function visibleAssignmentsSql(db: Queryable, viewer: Viewer, me: string, param: (value: unknown) => string): Promise<string> {
  if (viewer.role === 'admin') return `SELECT p0.id AS patient_id, a.coordinator_id, a.team_id FROM patients p0 LEFT JOIN assignments a ON a.patient_id = p0.id`;
  const memberships = await db.query<{ team_id: string; role: string }>(`SELECT team_id, role FROM team_members WHERE coordinator_id = $1`, [viewer.id]);
  const teams = memberships.rows.map((row) => row.team_id);
  const supervised = memberships.rows.filter((row) => row.role === 'supervisor' || viewer.role === 'supervisor').map((row) => row.team_id);
  const branches = [`SELECT patient_id, coordinator_id, team_id FROM assignments WHERE coordinator_id = ${me}::uuid`];
  if (teams.length > 0) branches.push(`SELECT patient_id, coordinator_id, team_id FROM assignments WHERE coordinator_id IS NULL AND team_id = ANY(${param(teams)}::uuid[])`);
  if (supervised.length > 0) {
    const ids = param(supervised);
    branches.push(`SELECT patient_id, coordinator_id, team_id FROM assignments WHERE team_id = ANY(${ids}::uuid[])`);
    branches.push(
      `SELECT patient_id, coordinator_id, team_id FROM assignments WHERE coordinator_id IN (SELECT coordinator_id FROM team_members WHERE team_id = ANY(${ids}::uuid[]))`,
    );
  }
  return branches.join(' UNION ');
}

/** Moves the caller's read position forward (never back) to `seq`, capped at the patient's log end. */
export async function markRead(db: Queryable, coordinatorId: string, patientId: string, seq: number): Promise<number> {
  const result = await db.query<{ seq: number }>(
    `INSERT INTO read_positions (coordinator_id, patient_id, seq)
     SELECT $1, $2, LEAST($3, p.last_seq) FROM patients p WHERE p.id = $2
     ON CONFLICT (coordinator_id, patient_id) DO UPDATE SET seq = GREATEST(read_positions.seq, EXCLUDED.seq), updated_at = now()
     RETURNING seq`,
    [coordinatorId, patientId, seq],
  );
  return result.rows[0]?.seq ?? 0;
}

/** A private note: in the patient's log for staff only; it never reaches an adapter. */
export async function addNote(db: Db, args: { patientId: string; actorId: string; note: string }): Promise<{ seq: number; id: string }> {
  return db.transaction(async (tx) => {
    const seq = await nextSeq(tx, args.patientId, 'event');
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO patient_events (patient_id, seq, kind, actor_id, note) VALUES ($1, $2, 'note', $3, $4) RETURNING id`,
      [args.patientId, seq, args.actorId, args.note],
    );
    await notifyActivity(tx, args.patientId, 'note');
    return { seq, id: inserted.rows[0]!.id };
  });
}

export interface PatientPanel {
  id: string;
  displayName: string | null;
  priority: number;
  tags: string[];
  attributes: Record<string, unknown>;
  program: string | null;
  language: string | null;
  region: string | null;
  timezone: string | null;
  riskTier: string | null;
  assignment: { coordinatorId: string | null; teamId: string | null; assignedAt: Date } | null;
  /** Every column of channel_identities as stored, so consent columns added by other migrations show up as they are. */
  identities: Array<Record<string, unknown>>;
  history: Array<{ seq: number; at: Date; kind: string; actorId: string | null; fromCoordinatorId: string | null; toCoordinatorId: string | null; note: string | null; detail: unknown }>;
}

/** Timeline kinds that change or explain who has the patient (written by routing, handoffs and the spine). */
const ASSIGNMENT_EVENT_KINDS = ['assigned', 'routed', 'escalated', 'handoff', 'handoff_accepted', 'handoff_declined', 'handoff_expired', 'claimed', 'reassigned', 'returned'];

export async function readPatientPanel(db: Queryable, patientId: string): Promise<PatientPanel | null> {
  const patient = await db.query<Record<string, any>>(
    `SELECT p.*, a.coordinator_id, a.team_id, a.assigned_at FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id WHERE p.id = $1`,
    [patientId],
  );
  const p = patient.rows[0];
  if (!p) return null;
  const identities = await db.query<Record<string, unknown>>(`SELECT * FROM channel_identities WHERE patient_id = $1 ORDER BY last_inbound_at DESC NULLS LAST, created_at`, [patientId]);
  const history = await db.query<Record<string, any>>(
    `SELECT seq, created_at, kind, actor_id, from_coordinator_id, to_coordinator_id, note, detail FROM patient_events
     WHERE patient_id = $1 AND kind = ANY($2::text[])
     ORDER BY seq DESC LIMIT 50`,
    [patientId, ASSIGNMENT_EVENT_KINDS],
  );
  return {
    id: p.id,
    displayName: p.display_name,
    priority: p.priority ?? 0,
    tags: p.tags ?? [],
    attributes: p.attributes ?? {},
    program: p.program ?? null,
    language: p.language ?? null,
    region: p.region ?? null,
    timezone: p.timezone ?? null,
    riskTier: p.risk_tier ?? null,
    assignment: p.assigned_at ? { coordinatorId: p.coordinator_id, teamId: p.team_id, assignedAt: p.assigned_at } : null,
    identities: identities.rows,
    history: history.rows.map((e) => ({
      seq: e.seq,
      at: e.created_at,
      kind: e.kind,
      actorId: e.actor_id,
      fromCoordinatorId: e.from_coordinator_id,
      toCoordinatorId: e.to_coordinator_id,
      note: e.note,
      detail: e.detail,
    })),
  };
}

export interface CannedResponse {
  id: string;
  shortcut: string;
  title: string;
  body: string;
}

export async function listCannedResponses(db: Queryable): Promise<CannedResponse[]> {
  return (await db.query<CannedResponse>(`SELECT id, shortcut, title, body FROM canned_responses ORDER BY shortcut`)).rows;
}

export async function upsertCannedResponse(db: Queryable, args: { id?: string; shortcut: string; title: string; body: string; actorId: string }): Promise<CannedResponse | null> {
  if (args.id) {
    const updated = await db.query<CannedResponse>(
      `UPDATE canned_responses SET shortcut = $2, title = $3, body = $4, updated_at = now() WHERE id = $1 RETURNING id, shortcut, title, body`,
      [args.id, args.shortcut, args.title, args.body],
    );
    return updated.rows[0] ?? null;
  }
  const inserted = await db.query<CannedResponse>(
    `INSERT INTO canned_responses (shortcut, title, body, created_by) VALUES ($1, $2, $3, $4)
     ON CONFLICT (shortcut) DO NOTHING RETURNING id, shortcut, title, body`,
    [args.shortcut, args.title, args.body, args.actorId],
  );
  return inserted.rows[0] ?? null;
}

export async function deleteCannedResponse(db: Queryable, id: string): Promise<boolean> {
  return (await db.query(`DELETE FROM canned_responses WHERE id = $1`, [id])).rowCount > 0;
}

export interface QueueLoad {
  coordinatorId: string;
  name: string;
  status: string;
  capacity: number;
  assigned: number;
  waiting: number;
  oldestWaitingSince: Date | null;
}

export interface TeamQueue {
  teamId: string;
  name: string;
  queued: number;
  waiting: number;
  oldestWaitingSince: Date | null;
}

/** Every coordinator's and team queue's load the viewer may supervise (admins: all). */
export async function supervisorOverview(db: Queryable, viewer: Viewer): Promise<{ coordinators: QueueLoad[]; teams: TeamQueue[] }> {
  const scopeTeams = supervisedTeamsSql('$1::uuid', '$2::text');
  const coordinators = await db.query<Record<string, any>>(
    `SELECT c.id, c.name, c.status, c.capacity,
            count(a.patient_id)::int AS assigned,
            count(p.waiting_since)::int AS waiting,
            min(p.waiting_since) AS oldest
     FROM coordinators c
     LEFT JOIN assignments a ON a.coordinator_id = c.id
     LEFT JOIN patients p ON p.id = a.patient_id
     WHERE c.role <> 'admin' AND ($2::text = 'admin' OR c.id = $1::uuid OR c.id IN (SELECT m.coordinator_id FROM team_members m WHERE m.team_id IN ${scopeTeams}))
     GROUP BY c.id ORDER BY min(p.waiting_since) ASC NULLS LAST, c.name`,
    [viewer.id, viewer.role],
  );
  const teams = await db.query<Record<string, any>>(
    `SELECT t.id, t.name, count(a.patient_id)::int AS queued, count(p.waiting_since)::int AS waiting, min(p.waiting_since) AS oldest
     FROM teams t
     LEFT JOIN assignments a ON a.team_id = t.id AND a.coordinator_id IS NULL
     LEFT JOIN patients p ON p.id = a.patient_id
     WHERE $2::text = 'admin' OR t.id IN ${scopeTeams}
     GROUP BY t.id ORDER BY t.name`,
    [viewer.id, viewer.role],
  );
  return {
    coordinators: coordinators.rows.map((r) => ({ coordinatorId: r.id, name: r.name, status: r.status, capacity: r.capacity, assigned: r.assigned, waiting: r.waiting, oldestWaitingSince: r.oldest })),
    teams: teams.rows.map((r) => ({ teamId: r.id, name: r.name, queued: r.queued, waiting: r.waiting, oldestWaitingSince: r.oldest })),
  };
}

export async function createTeam(db: Queryable, args: { name: string; timezone: string }): Promise<{ id: string; name: string; timezone: string } | null> {
  const result = await db.query<{ id: string; name: string; timezone: string }>(
    `INSERT INTO teams (name, timezone) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id, name, timezone`,
    [args.name, args.timezone],
  );
  return result.rows[0] ?? null;
}

/** Adds a coordinator to a team or changes their role in it; false when the team or coordinator does not exist. */
export async function setTeamMember(db: Queryable, args: { teamId: string; coordinatorId: string; role: 'member' | 'supervisor' }): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO team_members (team_id, coordinator_id, role)
     SELECT t.id, c.id, $3 FROM teams t, coordinators c WHERE t.id = $1 AND c.id = $2
     ON CONFLICT (team_id, coordinator_id) DO UPDATE SET role = EXCLUDED.role`,
    [args.teamId, args.coordinatorId, args.role],
  );
  return result.rowCount > 0;
}

export async function removeTeamMember(db: Queryable, teamId: string, coordinatorId: string): Promise<boolean> {
  return (await db.query(`DELETE FROM team_members WHERE team_id = $1 AND coordinator_id = $2`, [teamId, coordinatorId])).rowCount > 0;
}

export async function listTeams(db: Queryable): Promise<Array<{ id: string; name: string }>> {
  return (await db.query<{ id: string; name: string }>(`SELECT id, name FROM teams ORDER BY name`)).rows;
}

/** Activity after a resume token, oldest first; `more` says the client missed too much and should reload. */
export async function activitySince(db: Queryable, afterId: number, limit: number): Promise<{ items: Array<{ id: number; patientId: string; kind: string }>; more: boolean }> {
  const result = await db.query<{ id: number; patient_id: string; kind: string }>(
    `SELECT id, patient_id, kind FROM activity_feed WHERE id > $1 ORDER BY id LIMIT $2`,
    [afterId, limit + 1],
  );
  return { items: result.rows.slice(0, limit).map((r) => ({ id: Number(r.id), patientId: r.patient_id, kind: r.kind })), more: result.rows.length > limit };
}

export async function latestActivityId(db: Queryable): Promise<number> {
  const result = await db.query<{ id: number | null }>(`SELECT max(id) AS id FROM activity_feed`);
  return Number(result.rows[0]?.id ?? 0);
}

export async function pruneActivity(db: Queryable): Promise<void> {
  await db.query(`DELETE FROM activity_feed WHERE at < now() - interval '1 day'`);
}
