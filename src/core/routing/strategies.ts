/**
 * Choosing one coordinator from a team. State the strategies need (who was assigned when) arrives as facts,
 * so the choice is a pure function; every tie breaks by coordinator id, so input order never matters.
 */
import { instantMs, type CoordinatorFact } from './facts.ts';
import type { PoolStrategy } from './rules.ts';

export interface PoolRequest {
  teamId: string;
  strategy: PoolStrategy;
  /** Lower-case; each must be among the coordinator's skills or languages. */
  requiredSkills?: readonly string[];
  /** Coordinators not to pick, e.g. the one who let the previous step time out. */
  excludeIds?: ReadonlySet<string>;
}

export interface PoolPick {
  coordinatorId: string | null;
  /** Team members considered (after `excludeIds`). */
  members: number;
  eligible: number;
  excluded: { unavailable: number; atCapacity: number; missingSkills: number };
}

/**
 * Only an available member with `load < capacity` and every required skill can be picked, so a pool never
 * assigns above capacity; when nobody qualifies the answer is `coordinatorId: null` (the caller queues).
 *
 * - `round_robin`: least recently assigned first (`lastAssignedAt`, never-assigned first). With the caller
 *   recording each assignment this cycles through the team in id order, skipping whoever can't take it.
 * - `least_loaded`: lowest `load`, then least recently assigned.
 * - `longest_idle`: earliest `idleSince` (falling back to `lastAssignedAt`), never-active first, then lowest load.
 */
export function pickFromPool(coordinators: readonly CoordinatorFact[], request: PoolRequest): PoolPick {
  const required = request.requiredSkills ?? [];
  const pick: PoolPick = { coordinatorId: null, members: 0, eligible: 0, excluded: { unavailable: 0, atCapacity: 0, missingSkills: 0 } };
  let best: CoordinatorFact | null = null;
  let bestKey = 0;
  for (const c of coordinators) {
    if (!isMember(c, request.teamId) || request.excludeIds?.has(c.id)) continue;
    pick.members++;
    if (c.status !== 'available') {
      pick.excluded.unavailable++;
      continue;
    }
    // Written so that NaN or a missing number means "no room".
    if (!(c.load < c.capacity)) {
      pick.excluded.atCapacity++;
      continue;
    }
    if (required.length > 0 && !hasSkills(c, required)) {
      pick.excluded.missingSkills++;
      continue;
    }
    pick.eligible++;
    const key = primaryKey(c, request.strategy);
    if (best === null || key < bestKey || (key === bestKey && breaksTie(c, best, request.strategy))) {
      best = c;
      bestKey = key;
    }
  }
  pick.coordinatorId = best?.id ?? null;
  return pick;
}

function isMember(c: CoordinatorFact, teamId: string): boolean {
  return Array.isArray(c.teamIds) && c.teamIds.includes(teamId);
}

export function hasSkills(c: CoordinatorFact, requiredLower: readonly string[]): boolean {
  for (const skill of requiredLower) {
    if (!listHas(c.skills, skill) && !listHas(c.languages, skill)) return false;
  }
  return true;
}

function listHas(list: readonly string[] | undefined, lower: string): boolean {
  if (!Array.isArray(list)) return false;
  for (const item of list) {
    if (typeof item === 'string' && item.toLowerCase() === lower) return true;
  }
  return false;
}

/** Smaller is better. Never-assigned/never-active sorts first. */
function primaryKey(c: CoordinatorFact, strategy: PoolStrategy): number {
  switch (strategy) {
    case 'round_robin':
      return instantMs(c.lastAssignedAt) ?? -Infinity;
    case 'least_loaded':
      return c.load;
    case 'longest_idle':
      return instantMs(c.idleSince) ?? instantMs(c.lastAssignedAt) ?? -Infinity;
  }
}

/** True when `c` should beat `best` at an equal primary key. */
function breaksTie(c: CoordinatorFact, best: CoordinatorFact, strategy: PoolStrategy): boolean {
  if (strategy === 'least_loaded') {
    const a = instantMs(c.lastAssignedAt) ?? -Infinity;
    const b = instantMs(best.lastAssignedAt) ?? -Infinity;
    if (a !== b) return a < b;
  } else if (strategy === 'longest_idle' && c.load !== best.load) {
    return c.load < best.load;
  }
  return c.id < best.id;
}
