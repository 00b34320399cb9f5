-- The encounter intake's submission index (core schema): one row per submitted form and
-- one per amendment, keyed by the client-generated ids, so a retry or a double click is
-- answered from here and appends nothing. The facts themselves are in the log; this index
-- holds no PHI (the digest is keyed, the person a pseudonym).
CREATE TABLE IF NOT EXISTS {schema}.intake_submissions (
    submission_id   text        PRIMARY KEY,
    incident_id     text        NOT NULL,
    program         text        NOT NULL,
    clinician_id    text        NOT NULL,
    person          text,
    revision        integer     NOT NULL DEFAULT 0,
    digest          text        NOT NULL,   -- keyed digest of the submitted form
    referral_id     text,
    referral_status text        CHECK (referral_status IN ('requested', 'held_for_consent')),
    consent_id      text,
    consent_digest  text,
    events          integer     NOT NULL,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    amended_at      timestamptz
);
CREATE INDEX IF NOT EXISTS intake_submissions_incident ON {schema}.intake_submissions (incident_id);

CREATE TABLE IF NOT EXISTS {schema}.intake_amendments (
    amendment_id   text        PRIMARY KEY,
    submission_id  text        NOT NULL REFERENCES {schema}.intake_submissions (submission_id),
    revision       integer     NOT NULL,
    digest         text        NOT NULL,   -- keyed digest of the amendment
    clinician_id   text        NOT NULL,
    events         integer     NOT NULL,
    amended_at     timestamptz NOT NULL DEFAULT now()
);
