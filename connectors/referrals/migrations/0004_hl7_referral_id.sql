-- RF1-6 limit (issue 13, finding 8): HL7 v2.5.1 allows 30 characters, so a referral whose id
-- does not fit is sent under a short form (connectors.referrals.content.hl7_referral_id).
-- The short form is kept with the row so that the EHR's RRI^I12 naming it finds the referral.
-- NULL: the id is sent as it is (every FHIR row, and HL7 rows whose id fits).
ALTER TABLE {schema}.referral_deliveries ADD COLUMN IF NOT EXISTS hl7_referral_id text;
CREATE INDEX IF NOT EXISTS referral_deliveries_hl7_referral_id
    ON {schema}.referral_deliveries (hl7_referral_id) WHERE hl7_referral_id IS NOT NULL;
