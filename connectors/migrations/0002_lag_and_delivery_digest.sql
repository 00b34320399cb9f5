-- The newest record time a source has delivered (its lag survives a restart) and the
-- digest of each accepted webhook body (a retried delivery answers "duplicate"; a
-- different body under an accepted delivery id is refused).
ALTER TABLE {schema}.connector_cursors ADD COLUMN IF NOT EXISTS newest_record_at timestamptz;
ALTER TABLE {schema}.webhook_deliveries ADD COLUMN IF NOT EXISTS body_sha256 text;
