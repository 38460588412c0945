import type { Queryable } from './db.ts';

export interface AuditEntry {
  actorId: string | null;
  action: string;
  patientId?: string | null;
  detail?: Record<string, unknown>;
  ip?: string | null;
}

/** The audit log is append-only: this is the only statement the application runs against it. */
export async function appendAudit(db: Queryable, entry: AuditEntry): Promise<void> {
  await db.query(`INSERT INTO audit_log (actor_id, action, patient_id, detail, ip) VALUES ($1, $2, $3, $4, $5)`, [
    entry.actorId,
    entry.action,
    entry.patientId ?? null,
    JSON.stringify(entry.detail ?? {}),
    entry.ip ?? null,
  ]);
}

export interface AuditRow {
  id: number;
  at: Date;
  actor_id: string | null;
  action: string;
  patient_id: string | null;
  detail: Record<string, unknown>;
  ip: string | null;
}

export async function listAudit(db: Queryable, filter: { patientId?: string; actorId?: string; limit: number }): Promise<AuditRow[]> {
  const result = await db.query<AuditRow>(
    `SELECT id, at, actor_id, action, patient_id, detail, ip FROM audit_log
     WHERE ($1::uuid IS NULL OR patient_id = $1) AND ($2::uuid IS NULL OR actor_id = $2)
     ORDER BY id DESC LIMIT $3`,
    [filter.patientId ?? null, filter.actorId ?? null, filter.limit],
  );
  return result.rows;
}
