import type { Logger } from 'pino';
import type { Db } from '../db/db.ts';
import { fireDueTimers } from '../db/routing-timers.ts';

export interface RoutingTimersOptions {
  db: Db;
  logger: Logger;
  /** How often due timers are looked for; a fallback fires at most this late. */
  pollMs: number;
  /** The clock timers are compared against; tests pass one they can move. */
  now?: () => Date;
}

export interface RoutingTimers {
  /** Fires everything due now and resolves with how many fired (also what the loop runs). */
  tick(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Part of the worker role: fires routing fallback timers. Any number of workers may run it against one database;
 * `fireDueTimers` locks each due row with FOR UPDATE SKIP LOCKED, so every timer fires exactly once.
 */
export function startRoutingTimers(options: RoutingTimersOptions): RoutingTimers {
  const now = options.now ?? (() => new Date());
  let stopped = false;
  let running: Promise<number> = Promise.resolve(0);
  let timer: NodeJS.Timeout | undefined;

  const tick = (): Promise<number> => {
    running = running.then(
      () => fireDueTimers(options.db, now()),
      () => fireDueTimers(options.db, now()),
    );
    return running;
  };
  const loop = () => {
    if (stopped) return;
    void tick()
      .catch((error: unknown) => options.logger.error({ err: error }, 'routing timers failed'))
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, options.pollMs);
      });
  };
  timer = setTimeout(loop, options.pollMs);
  return {
    tick,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running.catch(() => {});
    },
  };
}
