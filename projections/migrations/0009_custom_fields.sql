-- County-defined fields of an incident (projections/incidents.py): the values its CAD row
-- and its intake forms carried, as given (hub/kernel/custom_fields.py reads them by the
-- field's declared type). Sensitive fields are never here (sealed in the form's note).
-- Rows projected before this migration get them on their next fold or a replay.
ALTER TABLE {schema}.incident_summary
    ADD COLUMN IF NOT EXISTS custom jsonb NOT NULL DEFAULT '{}'::jsonb;
