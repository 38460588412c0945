-- Identity linking and reversible patient merges (docs/ARCHITECTURE.md §3).

-- A merged (absorbed) patient keeps its row, so an undo can bring it back with the same id; while merged it
-- has no identities, messages, events or assignment, and nextSeq refuses it.
ALTER TABLE patients ADD COLUMN merged_into uuid REFERENCES patients (id);
CREATE INDEX patients_merged_into ON patients (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE patient_merges (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  survivor_id         uuid NOT NULL REFERENCES patients (id),
  absorbed_id         uuid NOT NULL REFERENCES patients (id),
  merged_by           uuid REFERENCES coordinators (id),
  merged_at           timestamptz NOT NULL DEFAULT now(),
  -- What the merge changed and an undo restores: both patients' counters and clocks, both assignments.
  survivor_before     jsonb NOT NULL,
  absorbed_before     jsonb NOT NULL,
  -- The survivor's assignment exactly as the merge left it; an undo restores the old one only if it is unchanged.
  survivor_assignment_after jsonb,
  -- The survivor's log length right after the merge: rows above it were written after the merge.
  merged_last_seq     integer NOT NULL,
  undone_by           uuid REFERENCES coordinators (id),
  undone_at           timestamptz,
  CHECK (survivor_id <> absorbed_id)
);
CREATE INDEX patient_merges_survivor ON patient_merges (survivor_id, merged_at);
CREATE INDEX patient_merges_absorbed ON patient_merges (absorbed_id, merged_at);

-- Every row a merge renumbered or moved, with where it was: the undo puts each back exactly.
CREATE TABLE patient_merge_rows (
  merge_id            uuid NOT NULL REFERENCES patient_merges (id),
  row_kind            text NOT NULL CHECK (row_kind IN ('message', 'event', 'identity')),
  row_id              uuid NOT NULL,
  original_patient_id uuid NOT NULL,
  -- NULL for identities (they have no place in the log).
  original_seq        integer,
  PRIMARY KEY (merge_id, row_kind, row_id)
);
