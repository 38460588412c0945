-- An admin can disable an account: it cannot sign in, and its tokens and sessions are revoked when it is disabled
-- (and refused while it is, should one be issued meanwhile). NULL: active.
ALTER TABLE coordinators ADD COLUMN disabled_at timestamptz;
