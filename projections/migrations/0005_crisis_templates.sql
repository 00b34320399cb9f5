-- Seattle Crisis Data: whether a crisis template of the incident reported a use of force
-- (null: the incident has no crisis template).
ALTER TABLE {schema}.incident_summary ADD COLUMN use_of_force boolean;
