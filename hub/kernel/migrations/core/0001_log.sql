-- The event log's own state (schema = settings.core_schema, one per topic prefix).

-- Exactly-once fact index: one row per event id ever appended; partition/offset are set
-- in the same transaction that claimed the id, after the broker acknowledged the record.
CREATE TABLE IF NOT EXISTS {schema}.event_index (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    topic        text NOT NULL,
    "partition"  integer,
    "offset"     bigint,
    recorded_at  timestamptz NOT NULL,
    appended_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS event_index_position ON {schema}.event_index (topic, "partition", "offset");

-- Dead letters (the Kafka dead-letter topics are the record; this is the operator's index).
CREATE TABLE IF NOT EXISTS {schema}.deadletters (
    id              text PRIMARY KEY,
    source          text NOT NULL,
    source_family   text NOT NULL,
    profile         text,
    record_ref      text NOT NULL,
    stage           text NOT NULL,
    reason          text NOT NULL,
    at              timestamptz NOT NULL,
    record          jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'redriven')),
    topic           text,
    "partition"     integer,
    "offset"        bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_error      text,
    redriven_at     timestamptz,
    redriven_events integer,
    redriven_duplicates integer
);
CREATE INDEX IF NOT EXISTS deadletters_status ON {schema}.deadletters (status, source_family, at);

-- Who looked at (or revealed) a dead letter's raw payload.
CREATE TABLE IF NOT EXISTS {schema}.deadletter_access (
    id            bigserial PRIMARY KEY,
    deadletter_id text NOT NULL,
    actor         text NOT NULL,
    action        text NOT NULL,
    reason        text,
    at            timestamptz NOT NULL DEFAULT now()
);

-- Per-person data keys wrapped by the master key (AES-256-GCM, AAD = kid). Erasure sets
-- wrapped = NULL and destroyed_at: the tombstone prevents re-creating a key for the person.
CREATE TABLE IF NOT EXISTS {schema}.person_keys (
    kid          text PRIMARY KEY,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);

-- Tamper evidence: one row per seal (a hash-chain segment over one fact partition).
CREATE TABLE IF NOT EXISTS {schema}.seals (
    topic            text NOT NULL,
    "partition"      integer NOT NULL,
    seq              bigint NOT NULL,
    first_offset     bigint NOT NULL,
    last_offset      bigint NOT NULL,
    record_count     bigint NOT NULL,
    log_start_offset bigint NOT NULL,
    head_hash        text NOT NULL,
    prev_seal_hash   text NOT NULL,
    seal_hash        text NOT NULL,
    sealed_at        timestamptz NOT NULL,
    seal_topic_offset bigint,
    PRIMARY KEY (topic, "partition", seq)
);

-- The digest of every sealed record (localises an altered / reordered record to its offset).
CREATE TABLE IF NOT EXISTS {schema}.sealed_records (
    topic        text NOT NULL,
    "partition"  integer NOT NULL,
    "offset"     bigint NOT NULL,
    digest       bytea NOT NULL,
    PRIMARY KEY (topic, "partition", "offset")
);

-- Results of `hub verify` (the API shows the latest).
CREATE TABLE IF NOT EXISTS {schema}.verify_runs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean NOT NULL,
    breaks      integer NOT NULL,
    records     bigint NOT NULL,
    result      jsonb NOT NULL
);
