-- Phone calls, their recordings and transcripts, and the durable jobs that fetch and transcribe recordings.

-- One row per call leg we answered or placed. A call takes a seq in the patient's log, like a message.
CREATE TABLE calls (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id         uuid NOT NULL REFERENCES patients (id),
  seq                integer NOT NULL,
  provider           text NOT NULL DEFAULT 'twilio',
  -- NULL only between placing an outbound call and the provider's answer naming it.
  provider_call_sid  text,
  direction          text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  patient_address    text NOT NULL,
  our_address        text,
  -- The coordinator the call was routed to (inbound) or who clicked to call (outbound).
  coordinator_id     uuid REFERENCES coordinators (id),
  coordinator_phone  text,
  -- How we answered: 'dial' (put through to the coordinator) or 'voicemail'.
  route              text CHECK (route IN ('dial', 'voicemail')),
  route_reason       text,
  -- Twilio's call status vocabulary: queued, ringing, in-progress, completed, busy, failed, no-answer, canceled.
  status             text NOT NULL,
  dial_status        text,
  duration_sec       integer,
  started_at         timestamptz NOT NULL DEFAULT now(),
  ended_at           timestamptz,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (patient_id, seq)
);
CREATE UNIQUE INDEX calls_provider_sid ON calls (provider, provider_call_sid) WHERE provider_call_sid IS NOT NULL;

-- Video visits: a coordinator's browser and the patient's page, joined by an expiring link; recorded only with
-- both sides' consent, which is logged here (and in audit_log).
CREATE TABLE visits (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  patient_id               uuid NOT NULL REFERENCES patients (id),
  seq                      integer NOT NULL,
  coordinator_id           uuid NOT NULL REFERENCES coordinators (id),
  -- SHA-256 of the join token sent to the patient; the token itself is only in the link.
  join_token_hash          text NOT NULL UNIQUE,
  expires_at               timestamptz NOT NULL,
  invite_message_id        uuid REFERENCES messages (id),
  status                   text NOT NULL DEFAULT 'invited' CHECK (status IN ('invited', 'active', 'ended')),
  coordinator_consent_at   timestamptz,
  patient_consent_at       timestamptz,
  started_at               timestamptz,
  ended_at                 timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  UNIQUE (patient_id, seq)
);

-- Chunks of a visit recording as the coordinator's browser uploads them; a re-sent chunk replaces itself.
CREATE TABLE visit_chunks (
  visit_id     uuid NOT NULL REFERENCES visits (id),
  chunk_index  integer NOT NULL CHECK (chunk_index >= 0),
  size_bytes   integer NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (visit_id, chunk_index)
);

CREATE TABLE call_recordings (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- A phone call's recording, or a video visit's.
  call_id                uuid REFERENCES calls (id),
  visit_id               uuid REFERENCES visits (id),
  patient_id             uuid NOT NULL REFERENCES patients (id),
  provider               text NOT NULL DEFAULT 'twilio',
  provider_recording_sid text NOT NULL,
  -- 'conversation' (a recorded <Dial>), 'voicemail' (a <Record>) or 'visit' (a video visit).
  kind                   text NOT NULL CHECK (kind IN ('conversation', 'voicemail', 'visit')),
  source_url             text,
  channels               integer,
  duration_sec           integer,
  -- pending → downloaded → transcribed; failed when the download or the engine kept failing, or the provider had no audio.
  status                 text NOT NULL CHECK (status IN ('pending', 'downloaded', 'transcribed', 'failed')),
  failure_reason         text,
  storage_key            text,
  content_type           text,
  size_bytes             bigint,
  transcript_text        text,
  transcript_segments    jsonb,
  transcript_engine      text,
  -- Set exactly when the transcript is empty: unreadable-media, no-audio, silence, no-speech-recognised.
  transcript_empty_reason text,
  transcript_search      tsvector,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider, provider_recording_sid),
  CHECK (call_id IS NOT NULL OR visit_id IS NOT NULL)
);
CREATE INDEX call_recordings_call ON call_recordings (call_id);
CREATE UNIQUE INDEX call_recordings_visit ON call_recordings (visit_id) WHERE visit_id IS NOT NULL;
CREATE INDEX call_recordings_patient ON call_recordings (patient_id);
CREATE INDEX call_recordings_search ON call_recordings USING gin (transcript_search);

-- Durable work on a recording: 'download' then 'transcribe'. One row per (recording, kind), so each runs once.
CREATE TABLE media_jobs (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recording_id     uuid NOT NULL REFERENCES call_recordings (id),
  kind             text NOT NULL CHECK (kind IN ('download', 'transcribe')),
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- The attempt in flight: which worker and until when its lease runs. A running job whose lease ran out
  -- (the worker died or hung) is claimable again; every write of an outcome is fenced on (claimed_by, attempts).
  claimed_by       text,
  lease_until      timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  UNIQUE (recording_id, kind)
);
CREATE INDEX media_jobs_due ON media_jobs (next_attempt_at) WHERE state IN ('pending', 'running');

-- Message bodies become searchable the same way transcripts are.
CREATE INDEX messages_body_search ON messages USING gin (to_tsvector('english', body));
