-- Web chat and email. Runs unchanged on PostgreSQL and PGlite.

-- What the patient's chat page shows, in the order it became visible there. A separate counter from the
-- patient's log `seq`: an outbound reply takes its log seq when it is written but reaches the page only when
-- the outbox relay sends it, possibly after a later inbound message. A page resuming "after N" must never
-- miss such a reply, so the stream numbers items when they are pushed, under the counter row's lock (writers
-- of one patient's stream commit in number order).
CREATE TABLE webchat_streams (
  patient_id      uuid PRIMARY KEY REFERENCES patients (id),
  last_stream_seq integer NOT NULL DEFAULT 0
);

CREATE TABLE webchat_stream_items (
  patient_id  uuid NOT NULL REFERENCES patients (id),
  stream_seq  integer NOT NULL,
  -- One message appears once, however often the relay retries its send: this is what makes web chat delivery exactly-once.
  message_id  uuid NOT NULL UNIQUE REFERENCES messages (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (patient_id, stream_seq)
);

-- RFC 5322 threading headers of email messages, both directions: inbound Message-ID / In-Reply-To / References
-- and subject, so a reply can thread under the patient's latest email; outbound, the Message-ID we set.
CREATE TABLE email_headers (
  message_id     uuid PRIMARY KEY REFERENCES messages (id),
  rfc_message_id text NOT NULL,
  in_reply_to    text,
  "references"   text[] NOT NULL DEFAULT '{}',
  subject        text,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_headers_rfc_message_id ON email_headers (rfc_message_id);
