-- Containment: the commander's plan, alert intake, and kill-switch deliveries.
ALTER TABLE incidents ADD COLUMN containment_plan TEXT;      -- JSON list; NULL: the severity's default
ALTER TABLE incidents ADD COLUMN automatic TEXT;             -- why Rein acted by itself, if it did
ALTER TABLE incidents ADD COLUMN alert_kind TEXT;
ALTER TABLE incidents ADD COLUMN fingerprint TEXT;
ALTER TABLE incidents ADD COLUMN alert_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN triage_channel TEXT;
ALTER TABLE incidents ADD COLUMN triage_ts TEXT;

-- One open incident per alert fingerprint, even when two alerts race.
CREATE UNIQUE INDEX incidents_open_fingerprint ON incidents (fingerprint)
    WHERE fingerprint IS NOT NULL AND status NOT IN ('closed', 'dismissed');

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,                     -- delivery_id: the same on every attempt
    incident        INTEGER NOT NULL REFERENCES incidents (number),
    agent_id        TEXT NOT NULL,
    event           TEXT NOT NULL CHECK (event IN ('containment', 'autonomy_changed')),
    actions         TEXT NOT NULL,                        -- JSON list of containment moves
    mode            TEXT NOT NULL,
    issued_at       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unconfirmed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    confirmed_at    TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX deliveries_pending ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_incident ON deliveries (incident);
