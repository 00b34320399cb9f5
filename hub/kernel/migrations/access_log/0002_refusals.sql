-- Refused and failed reads are logged too: outcome 'refused' (no or bad token, no or bad
-- purpose, bad id) and 'error' (the read failed), with a reason (a fixed phrase, never PHI).
ALTER TABLE {schema}.access_log ADD COLUMN IF NOT EXISTS reason text;
ALTER TABLE {schema}.access_log DROP CONSTRAINT IF EXISTS access_log_outcome_check;
ALTER TABLE {schema}.access_log ADD CONSTRAINT access_log_outcome_check
    CHECK (outcome IN ('allowed', 'denied', 'refused', 'error'));
