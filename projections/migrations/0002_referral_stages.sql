-- Monotone referral funnel: the furthest stage a referral reached and the stages implied
-- by a later fact without one of their own (e.g. "completed" with no "accepted" answer).
-- Rows projected before this migration are backfilled with the same rule as
-- projections.referrals.reached_stages; any EHR answer implies delivery.

ALTER TABLE {schema}.referral_funnel
    ADD COLUMN furthest_stage text,
    ADD COLUMN implied_stages text[] NOT NULL DEFAULT '{}';

UPDATE {schema}.referral_funnel SET furthest_stage = CASE
        WHEN requested_at IS NULL THEN NULL
        WHEN completed_at IS NOT NULL THEN 'completed'
        WHEN accepted_at IS NOT NULL THEN 'accepted'
        WHEN delivered_at IS NOT NULL OR status IN ('declined', 'cancelled') THEN 'delivered'
        ELSE 'requested'
    END;

UPDATE {schema}.referral_funnel SET implied_stages = array_remove(ARRAY[
        CASE WHEN furthest_stage IN ('delivered', 'accepted', 'completed') AND delivered_at IS NULL
             THEN 'delivered' END,
        CASE WHEN furthest_stage IN ('accepted', 'completed') AND accepted_at IS NULL
             THEN 'accepted' END
    ], NULL);

CREATE INDEX referral_funnel_requested_idx ON {schema}.referral_funnel (requested_at);
