-- The five-part postmortem: one per incident, a draft anyone may edit, then completed once.
-- The row holds the latest text; every save is also a `postmortem` timeline entry (written in
-- the same transaction) with the parts it changed, so the timeline keeps every version.
-- Completing it moves the incident `recovered -> postmortem` in that same transaction.
CREATE TABLE postmortems (
    incident          INTEGER PRIMARY KEY REFERENCES incidents (number),  -- one per incident
    business_impact   TEXT NOT NULL DEFAULT '' CHECK (length(business_impact) <= 3000),
    agent_path        TEXT NOT NULL DEFAULT '' CHECK (length(agent_path) <= 3000),
    failed_controls   TEXT NOT NULL DEFAULT '' CHECK (length(failed_controls) <= 3000),
    guardrail_changes TEXT NOT NULL DEFAULT '' CHECK (length(guardrail_changes) <= 3000),
    scorecard_updates TEXT NOT NULL DEFAULT '' CHECK (length(scorecard_updates) <= 3000),
    state             TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'completed')),
    revision          INTEGER NOT NULL DEFAULT 1 CHECK (revision >= 1),  -- one more each save
    started_by        TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    updated_by        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    completed_by      TEXT,
    completed_at      TEXT,
    CHECK ((state = 'completed') = (completed_by IS NOT NULL AND completed_at IS NOT NULL))
);

-- A completed postmortem is the record: it never changes again, and no postmortem is deleted.
CREATE TRIGGER postmortem_completed_is_final BEFORE UPDATE ON postmortems
WHEN OLD.state = 'completed'
BEGIN SELECT RAISE (ABORT, 'a completed postmortem is final'); END;
CREATE TRIGGER postmortem_no_delete BEFORE DELETE ON postmortems
BEGIN SELECT RAISE (ABORT, 'a postmortem is never deleted'); END;
