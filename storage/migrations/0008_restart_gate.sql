-- The restart gate and the staged restart (issue 6).
-- One `restarts` row per incident once its gate is opened: `gate` (criteria being checked),
-- `staged` (reactivated at `stage`, counting clean runs), then `reactivated` (the agent is
-- back in its normal mode) or `retired` (it stays paused). A failed or flagged run during a
-- stage puts it back to `gate` with the next `round`. Stage, counts and the stage's targets
-- are columns, so a restart of Rein continues where it was.
CREATE TABLE restarts (
    incident         INTEGER PRIMARY KEY REFERENCES incidents (number),
    agent_id         TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('gate', 'staged', 'reactivated', 'retired')),
    stage            TEXT CHECK (stage IS NULL
                         OR stage IN ('shadow', 'read_only', 'supervised', 'autonomous')),
    normal_mode      TEXT NOT NULL,                      -- the last stage: the policy's normal mode
    clean_runs       INTEGER NOT NULL DEFAULT 0 CHECK (clean_runs >= 0),  -- in this stage
    needed           INTEGER NOT NULL CHECK (needed >= 1),  -- clean_runs_per_stage
    round            INTEGER NOT NULL DEFAULT 1,         -- one more each time the gate reopens
    stage_started_at TEXT,
    offered_stage    TEXT,                               -- the stage whose Promote offer was posted
    gate_channel     TEXT,                               -- the gate message, kept current
    gate_ts          TEXT,
    opened_by        TEXT NOT NULL,
    opened_at        TEXT NOT NULL,
    decided_by       TEXT,
    decided_at       TEXT,
    updated_at       TEXT NOT NULL,
    CHECK ((state = 'staged') = (stage IS NOT NULL))
);
-- An agent is in at most one staged restart: a run report finds exactly one.
CREATE UNIQUE INDEX restarts_staged_agent ON restarts (agent_id) WHERE state = 'staged';

-- The gate's criteria as people left them: a person's check (with an optional note) or an
-- approver's acceptance of a criterion Rein judges not met (with a reason). The history of
-- every check and uncheck is on the timeline (`gate` entries); this is the current state.
CREATE TABLE gate_checks (
    incident  INTEGER NOT NULL REFERENCES incidents (number),
    criterion TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('checked', 'accepted')),
    note      TEXT NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    by        TEXT NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (incident, criterion)
);

-- Run reports (`POST /v1/agents/{agent_id}/runs`). Every report is kept, so a repeated run_id
-- is known as a duplicate; one outside a staged restart has no incident and counts nowhere.
CREATE TABLE runs (
    agent_id    TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'flagged')),
    summary     TEXT,
    cost        REAL,
    incident    INTEGER REFERENCES incidents (number),
    stage       TEXT,
    round       INTEGER,
    reported_by TEXT NOT NULL,
    at          TEXT NOT NULL,
    posted      INTEGER NOT NULL DEFAULT 0,              -- shown in the incident channel
    PRIMARY KEY (agent_id, run_id)
);
-- rowid is the arrival order.
CREATE INDEX runs_unposted ON runs (incident) WHERE incident IS NOT NULL AND posted = 0;
