import type { Logger } from 'pino';
import { z } from 'zod';
import { appendAudit } from '../db/audit.ts';
import { insertCoordinator, type Coordinator } from '../db/coordinators.ts';
import type { ControlHandler } from '../db/data-dir-lock.ts';
import type { Db } from '../db/db.ts';
import { hashPassword } from '../security/passwords.ts';

/*
 * What the switchboard CLI may ask of the process holding an embedded DATA_DIR, over its lock socket
 * (src/db/data-dir-lock.ts: one JSON request, one JSON response). The CLI writes through here whenever a process
 * holds the lock, and opens the store itself only when none does; both paths run createCoordinatorFromCli.
 */

export const CoordinatorInput = z.object({
  email: z.email(),
  name: z.string().trim().min(1),
  password: z.string().min(12, 'passwords need at least 12 characters'),
  role: z.enum(['coordinator', 'supervisor', 'admin']).default('coordinator'),
});
export type NewCoordinator = z.infer<typeof CoordinatorInput>;

/** Creates the coordinator and audits it (no acting coordinator: whoever runs the CLI as the OS user). Null when the email is taken. */
export async function createCoordinatorFromCli(db: Db, input: NewCoordinator): Promise<Coordinator | null> {
  const passwordHash = await hashPassword(input.password);
  return db.transaction(async (tx) => {
    const created = await insertCoordinator(tx, { email: input.email, name: input.name, role: input.role, passwordHash });
    if (created) await appendAudit(tx, { actorId: null, action: 'coordinator.create', detail: { coordinatorId: created.id, role: created.role, via: 'cli' } });
    return created;
  });
}

export function createControlHandler({ db, logger }: { db: Db; logger: Logger }): ControlHandler {
  return async (request) => {
    if (request.op !== 'coordinator.create') return { ok: false, error: { code: 'unknown_op', message: `unknown op ${request.op}` } };
    const input = CoordinatorInput.safeParse(request.input);
    if (!input.success) {
      return { ok: false, error: { code: 'invalid', message: input.error.issues.map((issue) => `--${issue.path.join('.')}: ${issue.message}`).join('\n') } };
    }
    try {
      const created = await createCoordinatorFromCli(db, input.data);
      if (!created) return { ok: false, error: { code: 'email_taken', message: `a coordinator with email ${input.data.email} already exists` } };
      logger.info({ coordinatorId: created.id, role: created.role }, 'coordinator created through the control socket');
      return { ok: true, coordinator: created };
    } catch (error) {
      logger.error({ err: error }, 'control request failed');
      return { ok: false, error: { code: 'internal', message: 'the server could not create the coordinator; see its log' } };
    }
  };
}
