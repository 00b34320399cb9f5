-- Re-driving failed deliveries (issue 13, `hub connectors redrive`): a failed row goes back
-- to pending with `redrives` incremented; its next failure, if any, is a new fact
-- (`referral.delivery_failed` with revision = redrives), never a second copy of the first.
ALTER TABLE {schema}.referral_deliveries ADD COLUMN IF NOT EXISTS redrives integer NOT NULL DEFAULT 0;
