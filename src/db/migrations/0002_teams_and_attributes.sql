-- Shared foundation for routing, the inbox, alerts and reports: teams, coordinator state and skills, patient
-- attributes that rules can match, team queues, and a flag for messages no human wrote.

CREATE TABLE teams (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name           text NOT NULL UNIQUE,
  -- IANA zone; business hours and holidays are read in it.
  timezone       text NOT NULL DEFAULT 'UTC',
  -- {"mon": [["09:00","17:00"]], …}; empty = always open.
  business_hours jsonb NOT NULL DEFAULT '{}',
  -- ["2026-12-25", …] in the team's zone.
  holidays       jsonb NOT NULL DEFAULT '[]',
  created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_members (
  team_id        uuid NOT NULL REFERENCES teams (id),
  coordinator_id uuid NOT NULL REFERENCES coordinators (id),
  -- A team's supervisors see every patient of the team.
  role           text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'supervisor')),
  PRIMARY KEY (team_id, coordinator_id)
);
CREATE INDEX team_members_coordinator ON team_members (coordinator_id);

ALTER TABLE coordinators
  ADD COLUMN status    text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'away', 'out_of_office')),
  ADD COLUMN capacity  integer NOT NULL DEFAULT 50 CHECK (capacity >= 0),
  ADD COLUMN skills    text[] NOT NULL DEFAULT '{}',
  ADD COLUMN languages text[] NOT NULL DEFAULT '{}',
  ADD COLUMN phone     text,
  ADD COLUMN timezone  text NOT NULL DEFAULT 'UTC';

ALTER TABLE patients
  ADD COLUMN program    text,
  ADD COLUMN language   text,
  -- Region: a US state or similar, as rules match it.
  ADD COLUMN region     text,
  ADD COLUMN timezone   text,
  ADD COLUMN risk_tier  text,
  ADD COLUMN priority   integer NOT NULL DEFAULT 0,
  ADD COLUMN tags       text[] NOT NULL DEFAULT '{}',
  ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';

-- A patient no coordinator could take waits in a team's queue, which any member can claim.
ALTER TABLE assignments
  ALTER COLUMN coordinator_id DROP NOT NULL,
  ADD COLUMN team_id uuid REFERENCES teams (id),
  ADD CONSTRAINT assignments_has_owner CHECK (coordinator_id IS NOT NULL OR team_id IS NOT NULL);
CREATE INDEX assignments_team ON assignments (team_id) WHERE team_id IS NOT NULL;

-- Automatic replies (after-hours notices, HELP answers, alert SMS) neither stop a patient's waiting clock
-- nor count as a first response.
ALTER TABLE messages ADD COLUMN automatic boolean NOT NULL DEFAULT false;
