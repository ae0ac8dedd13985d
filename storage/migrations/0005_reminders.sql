-- Reminders: each one a row, so none is lost or sent twice over a restart.
-- The scheduler's jobs are rebuilt from these rows (bot/scheduler.py: ReminderRunner).
-- A row is claimed (`sending`, with `claim` naming the sender) in a transaction before its
-- message goes to Slack; a failed send puts it back to `pending` with `next_try_at`. A row
-- found `sending` at start-up belonged to a process that died mid-send: it is `in_doubt`,
-- and Slack is asked whether its message (block id `rein-reminder-<id>`) arrived before it
-- is posted again.
CREATE TABLE reminders (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    incident       INTEGER NOT NULL REFERENCES incidents (number),
    kind           TEXT NOT NULL,                       -- bot/domain/reminders.py: ReminderKind
    key            TEXT NOT NULL,                       -- e.g. update:2026-11-24T10:00:00Z
    due_at         TEXT NOT NULL,                       -- UTC; never moves
    state          TEXT NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'sending', 'sent', 'cancelled')),
    attempts       INTEGER NOT NULL DEFAULT 0,          -- failed sends
    next_try_at    TEXT,                                -- after a failed send: not before
    in_doubt       INTEGER NOT NULL DEFAULT 0,
    claimed_at     TEXT,
    claim          TEXT,
    sent_at        TEXT,
    late           INTEGER NOT NULL DEFAULT 0,          -- sent well after due_at
    channel        TEXT,
    message_ts     TEXT,
    last_error     TEXT,
    cancel_reason  TEXT,
    payload        TEXT NOT NULL DEFAULT '{}',          -- JSON: what a scheduled kind says
    repeat_seconds INTEGER,                             -- scheduled kinds: again this long after
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CHECK (state <> 'sent' OR sent_at IS NOT NULL),
    CHECK (state <> 'sending' OR claim IS NOT NULL)
);
-- What start-up arms: the live rows only, however many have been sent before.
CREATE INDEX reminders_live ON reminders (state, due_at) WHERE state IN ('pending', 'sending');
CREATE INDEX reminders_by_incident ON reminders (incident, kind, state);
-- One live or sent reminder per key and incident: two planners racing insert it once, and a
-- reminder that was sent is never planned again.
CREATE UNIQUE INDEX reminders_key ON reminders (incident, key) WHERE state <> 'cancelled';
