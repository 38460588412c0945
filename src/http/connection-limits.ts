import type { ServerResponse } from 'node:http';
import { TooManyStreamsError } from '../errors.ts';

/** Caps on long-lived connections (SSE streams, WebSockets) of one web process; see CONNECTION_LIMIT_DEFAULTS. */
export interface ConnectionLimits {
  /** Open `/api/live` streams per coordinator (all their tabs and sessions together). */
  liveStreamsPerCoordinator: number;
  liveStreamsPerProcess: number;
  /** Open web chat streams per patient (every link made for that patient together). */
  webchatStreamsPerPatient: number;
  webchatStreamsPerProcess: number;
  /** Visit-signaling WebSockets, from the upgrade on (before hello too). Per visit side one joined socket holds. */
  visitSocketsPerProcess: number;
  /** A visit socket that has sent no message (its hello) within this is closed with 1008. */
  visitHelloTimeoutMs: number;
}

export const CONNECTION_LIMIT_DEFAULTS: ConnectionLimits = {
  liveStreamsPerCoordinator: 5,
  liveStreamsPerProcess: 2000,
  webchatStreamsPerPatient: 3,
  webchatStreamsPerProcess: 2000,
  visitSocketsPerProcess: 1000,
  visitHelloTimeoutMs: 10_000,
};

export type Release = () => void;
/** Which cap refused a connection. */
export type Refusal = 'per_caller' | 'per_process';

/**
 * Counts open connections per key and in total. Over either cap the *new* connection is refused and the ones
 * already open are left alone: simple and predictable (an attacker cannot push out a legitimate stream, and a
 * client sees at once why it was refused). The cost is that a dead connection the server has not noticed yet
 * holds its slot until its socket closes.
 */
export class ConnectionCounter {
  private readonly perKey = new Map<string, number>();
  private total = 0;

  constructor(private readonly caps: { perKey: number; total: number }) {}

  /** A release function (idempotent) when a slot is free; else which cap is full, and nothing is counted. */
  tryAcquire(key: string): { release: Release } | { refused: Refusal } {
    const held = this.perKey.get(key) ?? 0;
    if (held >= this.caps.perKey) return { refused: 'per_caller' };
    if (this.total >= this.caps.total) return { refused: 'per_process' };
    this.perKey.set(key, held + 1);
    this.total++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perKey.get(key) ?? 1) - 1;
      if (left === 0) this.perKey.delete(key);
      else this.perKey.set(key, left);
    };
    return { release };
  }
}

/**
 * Takes a stream slot for `key` before the route hijacks the response, or throws 429 `too_many_streams`. The slot
 * is released when the response closes (the client went away, or the server ended the stream) — at once if the
 * client already left while the route was awaiting something.
 */
export function acquireStreamSlot(counter: ConnectionCounter, key: string, raw: ServerResponse, what: { perKey: string; perProcess: string }): void {
  const slot = counter.tryAcquire(key);
  if ('refused' in slot) throw new TooManyStreamsError(slot.refused === 'per_caller' ? what.perKey : what.perProcess, slot.refused);
  if (raw.closed) return slot.release();
  raw.once('close', slot.release);
}
