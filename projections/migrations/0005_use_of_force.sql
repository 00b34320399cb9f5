-- Use of force as the co-responder's intake form recorded it (the current revision of the
-- incident's latest form): none, a force type, or NULL when no form recorded it.
ALTER TABLE {schema}.incident_summary ADD COLUMN IF NOT EXISTS use_of_force text;
