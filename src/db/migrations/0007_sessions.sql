-- The coordinator web app: cookie sessions with a CSRF token, sign-in lockout, per-coordinator read positions,
-- canned responses, a resumable activity feed for live updates, and the indexes the inbox sorts and searches on.

-- Browser sessions. Only a SHA-256 of the cookie value is stored; the CSRF token is per session and is sent
-- back by the app in a header on every state-changing request (double submit, checked against this row).
CREATE TABLE web_sessions (
  id_hash        text PRIMARY KEY,
  coordinator_id uuid NOT NULL REFERENCES coordinators (id),
  csrf_token     text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz NOT NULL DEFAULT now(),
  -- Idle and absolute expiry: whichever comes first.
  expires_at     timestamptz NOT NULL,
  absolute_expires_at timestamptz NOT NULL,
  revoked_at     timestamptz,
  ip             text,
  user_agent     text
);
CREATE INDEX web_sessions_coordinator ON web_sessions (coordinator_id) WHERE revoked_at IS NULL;

-- Failed sign-ins, one row per failure, keyed by account ('email:…') and by client ('ip:…'). Counting the
-- recent rows in the database makes the lockout hold across every web process.
CREATE TABLE login_failures (
  key text NOT NULL,
  at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);

-- How far each coordinator has read each patient's log: unread = inbound messages with a higher seq.
CREATE TABLE read_positions (
  coordinator_id uuid NOT NULL REFERENCES coordinators (id),
  patient_id     uuid NOT NULL REFERENCES patients (id),
  seq            integer NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (coordinator_id, patient_id)
);

CREATE TABLE canned_responses (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  shortcut   text NOT NULL UNIQUE CHECK (shortcut ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
  title      text NOT NULL,
  body       text NOT NULL,
  created_by uuid REFERENCES coordinators (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every NOTIFY on switchboard_activity is also a row here, so a live client that reconnects asks for
-- "everything after id N" (its resume token) instead of trusting that it heard every NOTIFY. Pruned after a day.
CREATE TABLE activity_feed (
  id         bigserial PRIMARY KEY,
  patient_id uuid NOT NULL,
  kind       text NOT NULL,
  at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_feed_at ON activity_feed (at);

-- Inbox: the newest message of a patient (preview) and unread counts walk messages by (patient_id, seq DESC),
-- which UNIQUE (patient_id, seq) already indexes. Unread counts only look at inbound rows above a position.
CREATE INDEX messages_inbound_by_patient ON messages (patient_id, seq) WHERE direction = 'inbound';
-- Team queues and "all mine" order by waiting time within an owner.
CREATE INDEX assignments_coordinator_patient ON assignments (coordinator_id, patient_id);
-- Search by message text: a full-text index (the 'simple' configuration: no stemming, works for any language
-- and exists on PGlite too); names and phone numbers are matched with ILIKE on the caller's few hundred patients.
CREATE INDEX messages_body_fts ON messages USING gin (to_tsvector('simple', body));
CREATE INDEX patient_events_kind ON patient_events (patient_id, kind);
