/**
 * Runs in the worker role: every `intervalMs`, if this process is the leader, evaluate the alert rules and
 * deliver due notifications. Leadership is a session-level PostgreSQL advisory lock held on a dedicated
 * connection: exactly one process holds it, and when that process dies PostgreSQL drops its session and
 * another takes over on its next tick. (The evaluator's transitions are also individually race-safe.)
 */
import type { Logger } from 'pino';
import type { Db, Session } from '../db/db.ts';
import { evaluateAlerts, type EvaluationResult } from './alerts.ts';
import { deliverDueNotifications, type NotifierDeps } from './notifier.ts';

export const ALERT_LEADER_LOCK: readonly [number, number] = [0x5b0a_0009, 1];

export interface AlertSchedulerOptions extends NotifierDeps {
  db: Db;
  logger: Logger;
  intervalMs: number;
  /** The clock the evaluator reads; tests inject one. */
  now?: () => Date;
}

export interface AlertScheduler {
  isLeader(): boolean;
  /** One evaluation + delivery pass (when leader). The timer calls it; tests call it directly. */
  tick(): Promise<{ leader: boolean; evaluation?: EvaluationResult; delivered: number }>;
  stop(): Promise<void>;
}

export async function startAlertScheduler(options: AlertSchedulerOptions, { autoStart = true } = {}): Promise<AlertScheduler> {
  const { db, logger } = options;
  const now = options.now ?? (() => new Date());
  const log = logger.child({ component: 'alerts' });
  let session: Session | null = null;
  let leader = false;
  let stopped = false;
  let running: Promise<unknown> | null = null;

  async function tryLead(): Promise<boolean> {
    if (leader) return true;
    session ??= await db.openSession();
    const got = await session.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1, $2) AS ok`, [...ALERT_LEADER_LOCK]);
    leader = got.rows[0]?.ok === true;
    if (leader) {
      log.info('this process now evaluates alerts');
      // A lost session (a database restart, a failover) takes the lock with it: another process may lead now.
      const held = session;
      void held.lost.then(() => {
        if (session !== held) return;
        leader = false;
        session = null;
        void held.release().catch(() => {});
        log.warn('alert leadership lost with its database session');
      });
    }
    else {
      // Only the leader keeps a connection out of the pool; the others ask again next tick.
      await session.release();
      session = null;
    }
    return leader;
  }

  async function tick() {
    if (!(await tryLead())) return { leader: false, delivered: 0 };
    const evaluation = await evaluateAlerts(db, { now: now() });
    let delivered = 0;
    for (let n = await deliverDueNotifications(options); n > 0; n = await deliverDueNotifications(options)) delivered += n;
    return { leader: true, evaluation, delivered };
  }

  let timer: NodeJS.Timeout | null = null;
  const schedule = () => {
    if (stopped || !autoStart) return;
    timer = setTimeout(() => {
      running = tick()
        .catch(async (error: unknown) => {
          log.error({ err: error }, 'alert evaluation failed');
          // A broken session loses the lock: start over on a fresh one.
          leader = false;
          await session?.release().catch(() => {});
          session = null;
        })
        .finally(schedule);
    }, options.intervalMs);
  };
  schedule();

  return {
    isLeader: () => leader,
    tick: () => {
      const run = tick();
      running = run;
      return run;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => {});
      if (session) await session.release().catch(() => {});
      leader = false;
    },
  };
}
