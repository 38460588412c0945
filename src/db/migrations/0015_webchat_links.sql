-- Web chat links as stored credentials (replacing stateless HMAC tokens that could not be revoked): a random
-- token whose SHA-256 is kept here, for one patient, made by one coordinator, expiring, revocable.
CREATE TABLE webchat_links (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash     text NOT NULL UNIQUE,
  patient_id     uuid NOT NULL REFERENCES patients (id),
  created_by     uuid REFERENCES coordinators (id),
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  -- 'revoked' (by a coordinator), 'renewed' (exchanged for a fresh link), 'reassigned', 'merged'
  revoked_reason text
);
CREATE INDEX webchat_links_patient ON webchat_links (patient_id) WHERE revoked_at IS NULL;

-- A link lives only while its patient stays in the care of the coordinator who made it. Triggers, not calls in
-- each code path, because a patient changes hands in many places (handoffs, accepts, claims, supervisor
-- reassignment, routing fallbacks, merges and their undos); each revokes inside the writing transaction and wakes
-- the patient's open chat streams (switchboard_webchat), which re-check their link and end.
CREATE FUNCTION revoke_webchat_links(p_patient uuid, p_keep_creator uuid, p_reason text) RETURNS void AS $$
BEGIN
  UPDATE webchat_links SET revoked_at = now(), revoked_reason = p_reason
  WHERE patient_id = p_patient AND revoked_at IS NULL AND (p_keep_creator IS NULL OR created_by IS DISTINCT FROM p_keep_creator);
  IF FOUND THEN
    PERFORM pg_notify('switchboard_webchat', p_patient::text);
  END IF;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION webchat_links_on_assignment() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.coordinator_id IS NOT DISTINCT FROM NEW.coordinator_id AND OLD.team_id IS NOT DISTINCT FROM NEW.team_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    PERFORM revoke_webchat_links(OLD.patient_id, NULL, 'reassigned');
  ELSIF NEW.coordinator_id IS NULL THEN
    PERFORM revoke_webchat_links(NEW.patient_id, NULL, 'reassigned');
  ELSE
    PERFORM revoke_webchat_links(NEW.patient_id, NEW.coordinator_id, 'reassigned');
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webchat_links_on_assignment AFTER INSERT OR DELETE OR UPDATE OF coordinator_id, team_id ON assignments
  FOR EACH ROW EXECUTE FUNCTION webchat_links_on_assignment();

CREATE FUNCTION webchat_links_on_merge() RETURNS trigger AS $$
BEGIN
  PERFORM revoke_webchat_links(NEW.id, NULL, 'merged');
  PERFORM revoke_webchat_links(NEW.merged_into, NULL, 'merged');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER webchat_links_on_merge AFTER UPDATE OF merged_into ON patients
  FOR EACH ROW WHEN (NEW.merged_into IS NOT NULL AND OLD.merged_into IS DISTINCT FROM NEW.merged_into)
  EXECUTE FUNCTION webchat_links_on_merge();
