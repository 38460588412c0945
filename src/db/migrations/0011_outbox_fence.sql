-- Fencing for outbox claims (docs/ARCHITECTURE.md §5). `claim_fence` is bumped by every claim: an outcome is
-- recorded only by the claim that made it, whichever worker key it ran under. `attempts` now counts only the
-- attempts that reached (or may have reached) the provider, so a database outage never adds to it or to backoff.
-- `quiet_after` is when no send started under the current claim can still be in flight (claim + send timeout +
-- margin): a claim whose worker lost its liveness lock is taken over only after it, so a takeover's lookup at the
-- provider sees whatever that worker sent.
ALTER TABLE outbox ADD COLUMN claim_fence integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN quiet_after timestamptz;
