-- Consent and reachability per identity, the consent ledger, and the channel history of a re-targeted reply.

-- Current consent, kept beside the identity so the reply chooser and the outbox read it without a scan of
-- the ledger; consent_events is the history. Both change in one transaction.
ALTER TABLE channel_identities
  ADD COLUMN opted_out          boolean NOT NULL DEFAULT false,
  ADD COLUMN consent_changed_at timestamptz,
  -- A provider's permanent "this address cannot be reached" (invalid number, user unavailable). Cleared when
  -- the patient writes from the identity again.
  ADD COLUMN unreachable_reason text,
  ADD COLUMN unreachable_at     timestamptz;

-- Every consent change with the message that caused it. Only ever INSERTed.
CREATE TABLE consent_events (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  identity_id       uuid NOT NULL REFERENCES channel_identities (id),
  patient_id        uuid NOT NULL REFERENCES patients (id),
  change            text NOT NULL CHECK (change IN ('opt_out', 'opt_in', 'help')),
  keyword           text NOT NULL,
  -- The inbound message that said STOP / START / HELP (NULL for a change a provider reported).
  source_message_id uuid REFERENCES messages (id),
  source            text NOT NULL DEFAULT 'keyword',
  created_at        timestamptz NOT NULL DEFAULT now()
);
-- A webhook redelivered after a crash must not record its keyword twice.
CREATE UNIQUE INDEX consent_events_source ON consent_events (source_message_id) WHERE source_message_id IS NOT NULL;
CREATE INDEX consent_events_identity ON consent_events (identity_id, created_at);

-- Earlier channels a reply was tried on before a permanent failure moved it: [{channel, address, errorCode, error, at}].
ALTER TABLE messages ADD COLUMN channel_history jsonb NOT NULL DEFAULT '[]';
