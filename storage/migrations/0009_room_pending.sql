-- An incident whose room (channel, topic, invitations, card, pin, digest) is still to be set
-- up. Set in the transaction that declares it, cleared when the set-up ends (whatever Slack
-- said); a Rein stopped in between (SIGKILL, a crash) resumes those rooms at start-up.
ALTER TABLE incidents ADD COLUMN room_pending INTEGER NOT NULL DEFAULT 0;

CREATE INDEX incidents_room_pending ON incidents (number) WHERE room_pending = 1;
