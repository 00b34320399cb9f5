-- Transactional outbox of delivery outcomes (issue 13): the outcome envelope (delivered /
-- rejected / delivery failed / held for consent) is stored with the ledger transition that
-- decides it, in ONE statement, and appended to the log from here, as stored. A crash between
-- Kafka's acknowledgement and the event index commit is repaired by appending the SAME bytes
-- again (an orphan copy `hub verify` accepts), never a re-stamped outcome (a conflicting copy).
-- NULL: nothing waits to be appended.
ALTER TABLE {schema}.referral_deliveries ADD COLUMN IF NOT EXISTS outbox text;
CREATE INDEX IF NOT EXISTS referral_deliveries_outbox
    ON {schema}.referral_deliveries (destination, seq) WHERE outbox IS NOT NULL;
