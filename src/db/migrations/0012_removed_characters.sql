-- Characters PostgreSQL cannot store (NUL, lone UTF-16 surrogates) are removed from inbound text before it is
-- written (src/core/text.ts); how many were removed is kept here, so the log shows the message was altered.
ALTER TABLE messages ADD COLUMN removed_characters integer NOT NULL DEFAULT 0;
