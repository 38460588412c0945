-- Sign-in throttling as counters that are checked and bumped by one statement (INSERT … ON CONFLICT DO UPDATE
-- … RETURNING), before the password hash is evaluated: 40 parallel guesses see attempt numbers 1…40 and only
-- the first `limit` are evaluated. Keys are 'account:<email>' (every attempt, reset by a success) and
-- 'ip:<address>' (wrong passwords only). A row's window starts at its first attempt; an attempt after the window
-- starts a new one. Replaces login_failures (one row per failure, counted after the fact).
CREATE TABLE login_attempts (
  key          text PRIMARY KEY,
  window_start timestamptz NOT NULL DEFAULT now(),
  attempts     integer NOT NULL
);
CREATE INDEX login_attempts_window_start ON login_attempts (window_start);
DROP TABLE login_failures;
