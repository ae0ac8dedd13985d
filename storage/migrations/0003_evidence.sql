-- Evidence: what responders and agent platforms preserve, each item stored whole.
CREATE TABLE evidence (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    incident  INTEGER NOT NULL REFERENCES incidents (number),
    kind      TEXT NOT NULL CHECK (kind IN
                  ('prompt', 'system_instructions', 'model_version', 'tool_calls', 'files_read',
                   'records_changed', 'external_urls', 'reviewer_notes', 'timestamps', 'cost',
                   'retries', 'final_output', 'handoff_contract', 'verifier_result',
                   'approval_context', 'other')),
    content   TEXT CHECK (content IS NULL OR length(CAST(content AS BLOB)) <= 1048576),
    url       TEXT,
    source    TEXT,
    note      TEXT,
    size      INTEGER NOT NULL DEFAULT 0,                -- bytes of content (UTF-8)
    added_by  TEXT NOT NULL,                             -- Slack user id or api:<token name>
    added_at  TEXT NOT NULL,
    CHECK (content IS NOT NULL OR url IS NOT NULL)
);
CREATE INDEX evidence_by_incident ON evidence (incident, id);
CREATE INDEX evidence_kinds ON evidence (incident, kind);

-- Nothing is ever deleted from or rewritten in the evidence store; a correction is a new item.
CREATE TRIGGER evidence_no_update BEFORE UPDATE ON evidence
BEGIN SELECT RAISE (ABORT, 'the evidence store is append-only'); END;
CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence
BEGIN SELECT RAISE (ABORT, 'the evidence store is append-only'); END;
