-- What intervention an incident got, for comparing outcomes (projections/incidents.py):
-- the engaging program, the co-responder mode, the co-responder unit (team) and the first
-- service type referred to. Rows projected before this migration get them on their next
-- fold or a replay (`hub replay`); until then they group as "none".
ALTER TABLE {schema}.incident_summary
    ADD COLUMN IF NOT EXISTS program text,
    ADD COLUMN IF NOT EXISTS mode text,
    ADD COLUMN IF NOT EXISTS team text,
    ADD COLUMN IF NOT EXISTS referral_type text;
