-- An outbox row whose last attempt's outcome is unknown, on a channel whose provider can neither be asked what it
-- accepted nor deduplicate a resend (Meta, SMTP), is held as 'uncertain' until a coordinator decides: resend, it
-- arrived, or cancel (docs/ARCHITECTURE.md §5). It is not claimable, but it is still open: it keeps blocking the
-- patient's later replies, so the per-patient "earlier open row" index covers it.
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check CHECK (state IN ('pending', 'sending', 'uncertain', 'sent', 'failed'));
DROP INDEX outbox_open_by_patient;
CREATE INDEX outbox_open_by_patient ON outbox (patient_id, seq) WHERE state IN ('pending', 'sending', 'uncertain');
