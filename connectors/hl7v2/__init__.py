"""HL7 v2 referrals: REF^I12 over MLLP out, RRI^I12 back."""
