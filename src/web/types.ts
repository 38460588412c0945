/** The API's JSON shapes as the app receives them (dates are ISO strings on the wire). */
import type { Channel, CoordinatorRole } from '../core/types.ts';

export type { Channel, CoordinatorRole };

export interface Me {
  id: string;
  email: string;
  name: string;
  role: CoordinatorRole;
}

export interface Conversation {
  patientId: string;
  displayName: string | null;
  address: string | null;
  waitingSince: string | null;
  lastMessageAt: string | null;
  priority: number;
  tags: string[];
  coordinatorId: string | null;
  teamId: string | null;
  unread: number;
  lastSeq: number;
  lastMessage: { body: string; direction: string; channel: string; status: string; at: string; automatic: boolean } | null;
}

export interface MessageItem {
  type: 'message';
  seq: number;
  id: string;
  at: string;
  direction: 'inbound' | 'outbound';
  channel: string;
  address: string;
  body: string;
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
  authorId: string | null;
  channelReason: string | null;
}

export interface EventItem {
  type: 'event';
  seq: number;
  id: string;
  at: string;
  kind: string;
  actorId: string | null;
  fromCoordinatorId: string | null;
  toCoordinatorId: string | null;
  note: string | null;
  detail: unknown;
}

/** Anything else a newer server sends is shown generically rather than dropped. */
export type TimelineItem = MessageItem | EventItem;

export interface TimelinePage {
  patientId: string;
  items: TimelineItem[];
  nextBefore: number | null;
}

export interface CoordinatorSummary {
  id: string;
  name: string;
  email: string;
  role: CoordinatorRole;
  isAvailable: boolean;
  assignedPatients?: number;
}

export interface Team {
  id: string;
  name: string;
}

export interface ReplyChannelPreview {
  ok: boolean;
  channel: string | null;
  address?: string;
  reason: string;
  lastInboundAt?: string | null;
  [extra: string]: unknown;
}

export interface PatientPanelData {
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
  assignment: { coordinatorId: string | null; teamId: string | null; assignedAt: string } | null;
  identities: Array<Record<string, unknown>>;
  history: Array<{ seq: number; at: string; kind: string; actorId: string | null; fromCoordinatorId: string | null; toCoordinatorId: string | null; note: string | null; detail: unknown }>;
}

export interface CannedResponse {
  id: string;
  shortcut: string;
  title: string;
  body: string;
}

export interface SupervisorOverview {
  coordinators: Array<{ coordinatorId: string; name: string; status: string; capacity: number; assigned: number; waiting: number; oldestWaitingSince: string | null }>;
  teams: Array<{ teamId: string; name: string; queued: number; waiting: number; oldestWaitingSince: string | null }>;
}
