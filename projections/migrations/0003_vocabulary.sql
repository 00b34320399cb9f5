-- Meaning is a projection: every incident row records the vocabulary (name@version) that
-- classified it, and the schema records the vocabulary set its rows were derived with, so
-- a projector started with another set re-derives every row from the stored facts
-- (projections.store.ReadModelStore.reclassify) and reports state what they used.
-- Rows projected before this migration have no vocabulary; the first projector start
-- re-derives them.
ALTER TABLE {schema}.incident_summary ADD COLUMN vocabulary text;

CREATE TABLE {schema}.read_model_meta (
    key    text PRIMARY KEY,
    value  jsonb NOT NULL
);
