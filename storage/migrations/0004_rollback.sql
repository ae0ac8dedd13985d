-- The rollback ledger: each record an incident's agent changed, and what became of it.
-- `id` numbers the items of one incident from 1 (people type them: "restored 1-212").
-- `status_by` / `status_at` are who set the current status and when (the API's `by` / `at`);
-- each change of status is an update of the row plus a `rollback` timeline entry written in
-- the same transaction, so the timeline keeps the history.
CREATE TABLE rollback_items (
    incident     INTEGER NOT NULL REFERENCES incidents (number),
    id           INTEGER NOT NULL,
    system       TEXT NOT NULL COLLATE NOCASE,              -- `CRM` and `crm` are one system
    record       TEXT NOT NULL,                             -- record ids can be case-sensitive
    value_before TEXT,
    value_after  TEXT,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                     ('pending', 'restored', 'accepted', 'not_reversible')),
    reason       TEXT,
    status_by    TEXT NOT NULL,
    status_at    TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (incident, id),
    UNIQUE (incident, system, record)                      -- a record is in the ledger once
);
CREATE INDEX rollback_by_status ON rollback_items (incident, status, id);

-- Nothing is ever deleted from the ledger, and what was reported stays as reported: only the
-- status, its reason, and who set it when, change.
CREATE TRIGGER rollback_no_delete BEFORE DELETE ON rollback_items
BEGIN SELECT RAISE (ABORT, 'the rollback ledger keeps every item'); END;
CREATE TRIGGER rollback_report_fixed
BEFORE UPDATE OF incident, id, system, record, value_before, value_after, created_by, created_at
ON rollback_items
BEGIN SELECT RAISE (ABORT, 'a reported ledger item does not change; only its status does'); END;
