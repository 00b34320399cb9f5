-- Outcome releases: every release of a closed month's table (projections.releases), as
-- published to the outcome topic and served to analysts; ``extras`` holds the month's repeat
-- encounters and referral funnel, released with it (not on the topic). A row is never changed: a
-- correction is the next release (seq + 1). ``known`` is what analysts know of the month
-- after the release (cells shown or exactly derivable), so the next release can protect a
-- cell whose change would be small. Publisher state, not a read model: a replay does not
-- publish and has no releases.
CREATE TABLE {schema}.outcome_releases (
    release_id    text PRIMARY KEY,
    period_start  date NOT NULL,
    seq           integer NOT NULL,
    released_at   timestamptz NOT NULL,
    vocabulary    text,
    code_version  text NOT NULL,
    records       jsonb NOT NULL,
    extras        jsonb NOT NULL,
    known         jsonb NOT NULL,
    UNIQUE (period_start, seq)
);
