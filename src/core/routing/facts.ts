/**
 * What the engine knows about one inbound message. The caller gathers these (from the database, or from a
 * dry-run request) so that routing itself stays a pure function of (rules, facts, now).
 */
import { z } from 'zod';
import { COORDINATOR_STATUSES, FallbackTargetSchema, type CoordinatorStatus, type FallbackTarget } from './rules.ts';

/** A moment: a Date, an ISO-8601 string or epoch milliseconds. Unparseable values count as "never". */
export type Instant = Date | string | number;

export interface CoordinatorFact {
  id: string;
  status: CoordinatorStatus;
  /** Patients/conversations currently assigned. */
  load: number;
  /** The most `load` may reach through new assignments. `Infinity` for no limit. */
  capacity: number;
  skills: readonly string[];
  /** Spoken languages; they count as skills for `requiredSkills`. */
  languages: readonly string[];
  teamIds: readonly string[];
  /** When a conversation was last assigned to them; round robin serves the least recent first. */
  lastAssignedAt?: Instant | null;
  /** Since when they have had nothing to do; longest idle serves the earliest first (falls back to lastAssignedAt). */
  idleSince?: Instant | null;
  /** Where their new messages go while they are away or out of office. */
  fallbackTarget?: FallbackTarget | null;
  /** Whether their patients come back to them when they return (the fallback only covers). */
  returnWhenBack?: boolean;
}

export interface PatientFacts {
  id?: string;
  program?: string | null;
  language?: string | null;
  /** Where the patient lives, e.g. a US state code. */
  state?: string | null;
  timeZone?: string | null;
  riskTier?: string | number | null;
  tags?: readonly string[];
  /** Organisation-defined attributes, addressed as `patient.attributes.<name>`. */
  attributes?: Readonly<Record<string, unknown>>;
  currentCoordinatorId?: string | null;
}

export interface MessageFacts {
  text: string;
  channel: string;
  hasMedia: boolean;
}

export interface ConversationFacts {
  /** When this conversation last got an automatic reply; throttles `auto_reply` actions. */
  lastAutoReplyAt?: Instant | null;
}

export interface RoutingFacts {
  patient: PatientFacts;
  message: MessageFacts;
  /** Every coordinator routing may consider; order does not matter (ties break by id). */
  coordinators: readonly CoordinatorFact[];
  conversation?: ConversationFacts;
}

const InstantSchema = z.union([z.iso.datetime({ offset: true }), z.number(), z.date()]);

/** For facts that arrive as JSON, e.g. the dry-run API. The engine itself tolerates malformed facts. */
export const RoutingFactsSchema = z.object({
  patient: z.object({
    id: z.string().optional(),
    program: z.string().nullish(),
    language: z.string().nullish(),
    state: z.string().nullish(),
    timeZone: z.string().nullish(),
    riskTier: z.union([z.string(), z.number()]).nullish(),
    tags: z.array(z.string()).optional(),
    attributes: z.record(z.string(), z.unknown()).optional(),
    currentCoordinatorId: z.string().nullish(),
  }),
  message: z.object({ text: z.string(), channel: z.string(), hasMedia: z.boolean() }),
  coordinators: z.array(
    z.object({
      id: z.string().min(1),
      status: z.enum(COORDINATOR_STATUSES),
      load: z.number().int().min(0),
      capacity: z.number().min(0),
      skills: z.array(z.string()),
      languages: z.array(z.string()),
      teamIds: z.array(z.string()),
      lastAssignedAt: InstantSchema.nullish(),
      idleSince: InstantSchema.nullish(),
      fallbackTarget: FallbackTargetSchema.nullish(),
      returnWhenBack: z.boolean().optional(),
    }),
  ),
  conversation: z.object({ lastAutoReplyAt: InstantSchema.nullish() }).optional(),
});

// Compile-time proof that parsed JSON facts are accepted by the engine.
const _factsFit: (parsed: z.output<typeof RoutingFactsSchema>) => RoutingFacts = (parsed) => parsed;
void _factsFit;

/** Epoch ms, or null for absent/unparseable. */
export function instantMs(value: Instant | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const ms = typeof value === 'number' ? value : typeof value === 'string' ? Date.parse(value) : value instanceof Date ? value.getTime() : NaN;
  return Number.isFinite(ms) ? ms : null;
}
