-- Delivery ledger of the referral workers (fhir-delivery, hl7-delivery).
-- One row per (destination, referral): the durable work queue between the log's
-- referral.requested facts and the EHR, and the memory of every attempt, recorded BEFORE the
-- message leaves, so a restarted worker knows a send may have happened (it then resends the
-- identical message: same MSH-10 / conditional create, which the receiver deduplicates).
CREATE TABLE IF NOT EXISTS {schema}.referral_deliveries (
    seq               bigserial,
    destination       text        NOT NULL,
    referral_id       text        NOT NULL,
    channel           text        NOT NULL CHECK (channel IN ('fhir', 'hl7v2')),
    person            text        NOT NULL,
    request_event_id  text        NOT NULL,
    request           jsonb       NOT NULL,   -- the referral.requested envelope (reason stays sealed)
    state             text        NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'held', 'sending', 'delivered', 'rejected', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    hold_seq          integer     NOT NULL DEFAULT 0,
    message_id        text,                   -- MSH-10 or Bundle id of what is (maybe) sent
    remote_id         text,
    last_error        text,
    outcome_event_id  text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, referral_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS referral_deliveries_seq ON {schema}.referral_deliveries (seq);
CREATE INDEX IF NOT EXISTS referral_deliveries_open
    ON {schema}.referral_deliveries (destination, seq) WHERE state IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS referral_deliveries_held
    ON {schema}.referral_deliveries (destination, person) WHERE state = 'held';
CREATE INDEX IF NOT EXISTS referral_deliveries_referral ON {schema}.referral_deliveries (referral_id);

CREATE TABLE IF NOT EXISTS {schema}.referral_delivery_attempts (
    destination  text        NOT NULL,
    referral_id  text        NOT NULL,
    attempt      integer     NOT NULL,
    message_id   text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    result       text,                        -- AA / AE / AR / 201 / 503 / timeout / error ...
    detail       text,
    PRIMARY KEY (destination, referral_id, attempt)
);

-- FHIR Task poller: the _lastUpdated high-water mark per destination.
CREATE TABLE IF NOT EXISTS {schema}.referral_poll_cursors (
    destination  text        PRIMARY KEY,
    cursor       text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
