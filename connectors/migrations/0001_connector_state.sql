-- Connector state: durable cursors, first revisions of source records, webhook deliveries.
CREATE TABLE IF NOT EXISTS {schema}.connector_cursors (
    source      text PRIMARY KEY,
    cursor      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {schema}.connector_revisions (
    source          text NOT NULL,
    record_key      text NOT NULL,
    first_revision  text NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, record_key)
);

CREATE TABLE IF NOT EXISTS {schema}.webhook_deliveries (
    receiver     text NOT NULL,
    delivery_id  text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    events       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (receiver, delivery_id)
);
