-- Routing: rule sets as versioned data, one stored decision per inbound message, durable fallback timers,
-- handoffs with an accept step, and the coordinator state routing reads.

-- Every accepted change is a new version; the newest version is the active one. A rejected rule set is never
-- stored, so the previous version simply stays active. Re-activating an old version stores it again as the newest.
CREATE TABLE routing_rule_sets (
  version     integer PRIMARY KEY CHECK (version >= 1),
  -- Exactly as the author wrote it (export gives it back); defaults are filled in when it is loaded.
  rule_set    jsonb NOT NULL,
  author_id   uuid REFERENCES coordinators (id),
  comment     text,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every coordinator with role 'coordinator' is implicitly a member of this team: it is the pool and the queue of
-- the built-in rule set (least loaded among everyone) that applies until an admin stores rules.
INSERT INTO teams (id, name) VALUES ('00000000-0000-4000-8000-00000000e001', 'Everyone');

ALTER TABLE coordinators
  -- Where new messages for this coordinator's patients go while they are away or out of office (a routing
  -- FallbackTarget: {"kind":"coordinator",…} or {"kind":"team",…}).
  ADD COLUMN fallback_target   jsonb,
  -- Whether patients covered by the fallback come back when the coordinator is available again.
  ADD COLUMN return_when_back  boolean NOT NULL DEFAULT false,
  -- Round robin serves the least recently assigned first.
  ADD COLUMN last_assigned_at  timestamptz,
  ADD COLUMN status_changed_at timestamptz;

ALTER TABLE patients
  -- Throttles auto_reply actions: at most one per configured interval per conversation.
  ADD COLUMN last_auto_reply_at timestamptz;

ALTER TABLE assignments
  -- The assignment only covers for this coordinator while they are away; set back when they return.
  ADD COLUMN return_to_coordinator_id uuid REFERENCES coordinators (id);

-- One row per decision: every inbound message gets exactly one (the unique index), escalations add more.
CREATE TABLE routing_decisions (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id       uuid NOT NULL REFERENCES patients (id),
  message_id       uuid REFERENCES messages (id),
  kind             text NOT NULL CHECK (kind IN ('inbound', 'escalation')),
  -- NULL: the built-in rule set (no version stored yet).
  rule_set_version integer,
  rule_id          text NOT NULL,
  -- {"kind":"coordinator","coordinatorId":…} or {"kind":"queue","teamId":…}
  assignment       jsonb NOT NULL,
  -- The whole RoutingDecision: actions, fallbacks left, and the explanation (conditions with the fact values
  -- that decided them, and each resolution step).
  decision         jsonb NOT NULL,
  -- The patient and message facts the decision saw (coordinator facts are summarised in the explanation).
  facts            jsonb NOT NULL,
  decided_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX routing_decisions_inbound ON routing_decisions (message_id) WHERE kind = 'inbound';
CREATE INDEX routing_decisions_patient ON routing_decisions (patient_id, decided_at);

CREATE TABLE handoffs (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id          uuid NOT NULL REFERENCES patients (id),
  actor_id            uuid NOT NULL REFERENCES coordinators (id),
  from_coordinator_id uuid REFERENCES coordinators (id),
  to_coordinator_id   uuid REFERENCES coordinators (id),
  to_team_id          uuid REFERENCES teams (id),
  note                text NOT NULL,
  requires_accept     boolean NOT NULL DEFAULT false,
  state               text NOT NULL CHECK (state IN ('pending', 'accepted', 'declined', 'expired', 'superseded', 'completed')),
  -- Where it goes when declined or not accepted in time (routing Fallback list).
  fallbacks           jsonb NOT NULL DEFAULT '[]',
  created_at          timestamptz NOT NULL,
  resolved_at         timestamptz,
  resolved_by         uuid REFERENCES coordinators (id),
  CHECK (to_coordinator_id IS NOT NULL OR to_team_id IS NOT NULL)
);
CREATE UNIQUE INDEX handoffs_pending ON handoffs (patient_id) WHERE state = 'pending';

-- "If nobody accepts or answers within N minutes, move to the next target": one open timer per patient at most.
-- Workers claim due rows with FOR UPDATE SKIP LOCKED; the row is closed (fired_at) in the same transaction
-- that applies its outcome.
CREATE TABLE routing_timers (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id     uuid NOT NULL REFERENCES patients (id),
  kind           text NOT NULL CHECK (kind IN ('escalation', 'handoff_accept')),
  due_at         timestamptz NOT NULL,
  -- When the step being timed began: a human reply after it means the patient was answered.
  started_at     timestamptz NOT NULL,
  -- Who the step waits on: a coordinator, or a team queue when coordinator_id is NULL.
  coordinator_id uuid REFERENCES coordinators (id),
  team_id        uuid REFERENCES teams (id),
  handoff_id     uuid REFERENCES handoffs (id),
  -- The RoutingDecision whose remaining fallbacks escalation continues with.
  decision       jsonb NOT NULL,
  fired_at       timestamptz,
  outcome        text
);
CREATE UNIQUE INDEX routing_timers_open ON routing_timers (patient_id) WHERE fired_at IS NULL;
CREATE INDEX routing_timers_due ON routing_timers (due_at) WHERE fired_at IS NULL;
