-- Demographics reports per person (projections/demographics.py), still sealed with the
-- person's key: the intake form's person, a case system's case opening, an EHR's answer.
-- The report opens them with the keyring and aggregates them through the small-cell rule;
-- an erased person's reports no longer open and count as not reported. Rows appear on the
-- next fold of the person's facts or after `hub replay`.
CREATE TABLE IF NOT EXISTS {schema}.person_demographics (
    person      text NOT NULL,
    event_id    text NOT NULL,
    source      text NOT NULL,
    at          timestamptz NOT NULL,
    kid         text NOT NULL,
    nonce       text NOT NULL,
    ciphertext  text NOT NULL,
    PRIMARY KEY (person, event_id)
);
