-- Metrics, alerts and reports (issue 7). Alert rules are versioned documents; alerts have a persisted
-- lifecycle; every lifecycle transition fans out into a notifications outbox, one row per target.

-- The newest version is the active one. A document is validated before it is stored, so an invalid one
-- never becomes a version and the previous version stays active.
CREATE TABLE alert_rule_versions (
  version    integer PRIMARY KEY,
  document   jsonb NOT NULL,
  created_by uuid REFERENCES coordinators (id),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  rule_id         text NOT NULL,
  rule_version    integer,
  -- What the alert is about: 'patient:<uuid>', 'channel:sms', 'coordinator:<uuid>', 'outbox', 'delivery'.
  subject         text NOT NULL,
  state           text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
  severity        text NOT NULL DEFAULT 'warning',
  summary         text NOT NULL,
  value           double precision,
  patient_id      uuid,
  coordinator_id  uuid,
  team_id         uuid,
  -- When the condition was first seen (pending), when it had held for the rule's "for" duration (firing),
  -- and when it stopped holding (resolved). A pending alert whose condition clears is resolved silently.
  started_at      timestamptz NOT NULL,
  firing_at       timestamptz,
  resolved_at     timestamptz,
  last_notified_at timestamptz,
  acknowledged_by uuid REFERENCES coordinators (id),
  acknowledged_at timestamptz
);
-- At most one open alert per rule and subject: a second evaluator racing the first cannot open another.
CREATE UNIQUE INDEX alerts_open ON alerts (rule_id, subject) WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, firing_at);

CREATE TABLE alert_transitions (
  id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  alert_id uuid NOT NULL REFERENCES alerts (id),
  kind     text NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved')),
  at       timestamptz NOT NULL,
  summary  text NOT NULL
);
-- An alert fires once and resolves once; only throttled repeats may occur many times.
CREATE UNIQUE INDEX alert_transitions_once ON alert_transitions (alert_id, kind) WHERE kind <> 'repeat';

-- The notifications outbox: exactly one row per (transition, target), claimed with a lease like the
-- message outbox, retried with backoff, and marked failed (shown as failing) after its last attempt.
CREATE TABLE alert_notifications (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  transition_id   uuid NOT NULL REFERENCES alert_transitions (id),
  target          text NOT NULL,
  state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  lease_until     timestamptz,
  last_error      text,
  sent_at         timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (transition_id, target)
);
CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) WHERE state IN ('pending', 'sending');

-- Reports read messages by time and patient.
CREATE INDEX ops_messages_created_at ON messages (created_at);
CREATE INDEX ops_handoffs_created_at ON patient_events (created_at) WHERE kind = 'handoff';
