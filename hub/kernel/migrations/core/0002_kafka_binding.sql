-- Which Kafka cluster this core schema's state belongs to (hub.binding). One row, written
-- at first use; Runtime.open refuses to pair the state with another cluster's log.
-- `hub infra rebind --yes` moves it deliberately (previous_cluster_id keeps the last one).
CREATE TABLE IF NOT EXISTS {schema}.kafka_binding (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id          text NOT NULL,
    bootstrap           text NOT NULL,
    bound_at            timestamptz NOT NULL DEFAULT now(),
    previous_cluster_id text
);
