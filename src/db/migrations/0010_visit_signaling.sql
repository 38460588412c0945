-- Video-visit signaling across web processes (§14). Each web process holds only its own WebSockets; which
-- connection is each side of a visit, and the messages between the two, live here. A NOTIFY on
-- switchboard_visit_signals names the addressed connection and the row, and the process that holds that
-- connection reads the row and deletes it as it delivers it.

-- The current connection of each side of a visit, whichever web process holds it. A newer connection of a side
-- overwrites the row (the older one is told and closed). ready_peer is the other side's connection this one was
-- last sent `ready` with: `ready` goes out once per pair of connections, whichever process decides it.
CREATE TABLE visit_connections (
  visit_id       uuid NOT NULL REFERENCES visits (id),
  side           text NOT NULL CHECK (side IN ('coordinator', 'patient')),
  connection_id  uuid NOT NULL UNIQUE,
  ready_peer     uuid,
  connected_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (visit_id, side)
);

-- Messages addressed to one connection (not to a side: a reconnected page starts a new RTCPeerConnection and
-- must not get the SDP meant for the old one). An SDP offer can exceed NOTIFY's 8000-byte payload, so the body
-- travels here and the NOTIFY carries ids only. Rows are deleted when delivered, when their connection leaves
-- or is replaced, and otherwise after ten minutes (a process that died with them).
CREATE TABLE visit_signals (
  id             bigserial PRIMARY KEY,
  visit_id       uuid NOT NULL REFERENCES visits (id),
  to_connection  uuid NOT NULL,
  body           text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX visit_signals_to_connection ON visit_signals (to_connection);
CREATE INDEX visit_signals_created_at ON visit_signals (created_at);
