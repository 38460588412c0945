-- Switchboard schema, version 1. Runs unchanged on PostgreSQL and PGlite.

CREATE TABLE coordinators (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email         text NOT NULL UNIQUE,
  name          text NOT NULL,
  role          text NOT NULL DEFAULT 'coordinator' CHECK (role IN ('coordinator', 'supervisor', 'admin')),
  password_hash text NOT NULL,
  is_available  boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens: only a SHA-256 of the token is stored, so a database leak does not leak sessions.
CREATE TABLE api_tokens (
  token_hash     text PRIMARY KEY,
  coordinator_id uuid NOT NULL REFERENCES coordinators (id),
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz
);

CREATE TABLE patients (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  display_name  text,
  -- The per-patient log counter: every message and event takes the next value under this row's lock,
  -- which is what makes the log one total order across channels.
  last_seq      integer NOT NULL DEFAULT 0,
  -- Oldest inbound message not yet answered by a human; NULL when nobody is waiting. Kept in the same
  -- transaction as the messages that change it, so the inbox can sort on an index instead of a scan.
  waiting_since timestamptz,
  last_message_at timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patients_waiting_since ON patients (waiting_since) WHERE waiting_since IS NOT NULL;

-- An identity is (channel, address), not a provider: switching SMS providers keeps every patient.
CREATE TABLE channel_identities (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id       uuid NOT NULL REFERENCES patients (id),
  channel          text NOT NULL,
  address          text NOT NULL,
  last_inbound_at  timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel, address)
);
CREATE INDEX channel_identities_patient ON channel_identities (patient_id);

CREATE TABLE messages (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id          uuid NOT NULL REFERENCES patients (id),
  seq                 integer NOT NULL,
  direction           text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  channel             text NOT NULL,
  identity_id         uuid REFERENCES channel_identities (id),
  address             text NOT NULL,
  provider            text,
  provider_message_id text,
  body                text NOT NULL,
  media               jsonb NOT NULL DEFAULT '[]',
  status              text NOT NULL,
  error_code          text,
  error_message       text,
  author_id           uuid REFERENCES coordinators (id),
  idempotency_key     text,
  channel_reason      text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  status_updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (patient_id, seq)
);
-- Provider retries and duplicates collapse here: one row per provider message, whichever direction.
CREATE UNIQUE INDEX messages_provider_message ON messages (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages (patient_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Statuses that arrive before we know which message they belong to (a callback can beat our own commit
-- of the provider's id) wait here and are applied when the id is recorded.
CREATE TABLE delivery_events (
  provider            text NOT NULL,
  provider_message_id text NOT NULL,
  status              text NOT NULL,
  error_code          text,
  error_message       text,
  received_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, provider_message_id, status)
);

CREATE TABLE outbox (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  message_id      uuid NOT NULL UNIQUE REFERENCES messages (id),
  patient_id      uuid NOT NULL REFERENCES patients (id),
  seq             integer NOT NULL,
  state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- The attempt in flight: which worker (its advisory-lock key) and when. A claim by a worker that no
  -- longer holds its lock is an attempt whose outcome is unknown.
  claimed_by      integer,
  claimed_at      timestamptz,
  lease_until     timestamptz,
  -- The provider may have the message (timeout, 5xx, dropped connection, crash mid-send): look it up before resending.
  needs_lookup    boolean NOT NULL DEFAULT false,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);
CREATE INDEX outbox_open_by_patient ON outbox (patient_id, seq) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_open_by_due ON outbox (next_attempt_at) WHERE state IN ('pending', 'sending');

CREATE SEQUENCE outbox_worker_keys;

CREATE TABLE assignments (
  patient_id     uuid PRIMARY KEY REFERENCES patients (id),
  coordinator_id uuid NOT NULL REFERENCES coordinators (id),
  assigned_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assignments_coordinator ON assignments (coordinator_id);

-- Everything in a patient's log that is not a message: assignments, handoffs (later: routing decisions, calls).
CREATE TABLE patient_events (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id    uuid NOT NULL REFERENCES patients (id),
  seq           integer NOT NULL,
  kind          text NOT NULL,
  actor_id      uuid REFERENCES coordinators (id),
  from_coordinator_id uuid REFERENCES coordinators (id),
  to_coordinator_id   uuid REFERENCES coordinators (id),
  note          text,
  detail        jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (patient_id, seq)
);

-- Append-only: the application only ever INSERTs here.
CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor_id    uuid,
  action      text NOT NULL,
  patient_id  uuid,
  detail      jsonb NOT NULL DEFAULT '{}',
  ip          text
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
