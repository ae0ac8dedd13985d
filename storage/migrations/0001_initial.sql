-- Incidents, their append-only timeline, and each agent's autonomy.
CREATE TABLE incidents (
    number          INTEGER PRIMARY KEY AUTOINCREMENT,  -- INC-<number>; never reused
    title           TEXT NOT NULL,
    summary         TEXT NOT NULL DEFAULT '',
    agent_id        TEXT NOT NULL,
    severity        TEXT NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    status          TEXT NOT NULL CHECK (status IN
                        ('triage', 'declared', 'contained', 'recovered',
                         'postmortem', 'closed', 'dismissed')),
    commander       TEXT NOT NULL,
    declared_by     TEXT NOT NULL,
    impact          TEXT NOT NULL DEFAULT '{}',          -- JSON
    channel_id      TEXT,
    channel_name    TEXT,
    card_channel    TEXT,
    card_ts         TEXT,
    digest_ts       TEXT,
    idempotency_key TEXT UNIQUE,                          -- a retried submission finds its incident
    declared_at     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX incidents_by_status ON incidents (status, number);
CREATE INDEX incidents_by_channel ON incidents (channel_id);
CREATE INDEX incidents_by_declarer ON incidents (declared_by, created_at);

CREATE TABLE timeline (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    incident  INTEGER NOT NULL REFERENCES incidents (number),
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    text      TEXT NOT NULL,
    data      TEXT NOT NULL DEFAULT '{}',                 -- JSON
    -- Set for entries that must exist once however often Slack delivers them
    -- (a pinned message, a retried event): a second insert with the same key is ignored.
    dedupe_key TEXT UNIQUE
);
CREATE INDEX timeline_by_incident ON timeline (incident, id);

-- Nothing is ever deleted from or rewritten on the timeline; a correction is a new entry.
CREATE TRIGGER timeline_no_update BEFORE UPDATE ON timeline
BEGIN SELECT RAISE (ABORT, 'the timeline is append-only'); END;
CREATE TRIGGER timeline_no_delete BEFORE DELETE ON timeline
BEGIN SELECT RAISE (ABORT, 'the timeline is append-only'); END;

CREATE TABLE agent_autonomy (
    agent_id   TEXT PRIMARY KEY,
    mode       TEXT NOT NULL,
    runs       INTEGER NOT NULL,
    writes     INTEGER NOT NULL,
    outbound   INTEGER NOT NULL,
    schedules  INTEGER NOT NULL,
    incident   INTEGER REFERENCES incidents (number),
    updated_at TEXT NOT NULL
);
