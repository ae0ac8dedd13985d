-- "The latest entry of a kind" (the latest status update, the last transition) without
-- reading an incident's whole timeline back.
CREATE INDEX timeline_by_incident_kind ON timeline (incident, kind, id);
