"""Prometheus metrics of every hub component, defined once here so that names and labels
stay consistent. Label values never carry PHI (sources, destinations, codes only).

Connectors: read / appended / duplicates / excluded / dead-lettered records, source
errors and lag. Delivery: sends, acknowledgements by code, retries, latency. Projections:
lag per partition, events processed, transaction latency. Verification status.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- connectors (inbound) ---
RECORDS_READ = Counter("hub_connector_records_read_total", "Raw records read from a source", ["source"])
EVENTS_APPENDED = Counter("hub_connector_events_appended_total", "Events appended to the log", ["source"])
EVENTS_DUPLICATE = Counter(
    "hub_connector_events_duplicate_total", "Events refused as already in the log", ["source"]
)
RECORDS_EXCLUDED = Counter(
    "hub_connector_records_excluded_total", "Rows the source marks duplicate/void/test", ["source"]
)
RECORDS_DEADLETTERED = Counter(
    "hub_connector_records_deadlettered_total", "Records sent to a dead-letter topic", ["source", "stage"]
)
UNKNOWN_DISPOSITIONS = Counter(
    "hub_connector_unknown_disposition_total", "Dispositions mapped to 'unknown'", ["source"]
)
SOURCE_ERRORS = Counter("hub_connector_source_errors_total", "Failed source polls", ["source"])
SOURCE_LAG = Gauge("hub_connector_source_lag_seconds", "Age of the newest record seen", ["source"])
SOURCE_UP = Gauge("hub_connector_source_up", "1 when the last poll succeeded", ["source"])

# --- delivery (outbound referrals) ---
DELIVERY_SENT = Counter("hub_delivery_sent_total", "Referral send attempts", ["destination", "channel"])
DELIVERY_ACKS = Counter(
    "hub_delivery_acks_total", "Acknowledgements by code (AA/AE/AR/2xx/4xx/5xx/timeout)",
    ["destination", "channel", "code"],
)
DELIVERY_RETRIES = Counter("hub_delivery_retries_total", "Retried sends", ["destination", "channel"])
INTAKE_RENEWALS = Counter(
    "hub_delivery_intake_renewals_total",
    "Kafka consumers of a delivery intake replaced after they stopped fetching while referral "
    "requests waited",
    ["channel"],
)
DELIVERY_LOOKUPS = Counter(
    "hub_delivery_lookups_total",
    "Receivers asked whether they have a referral before a failure is recorded, by answer "
    "(found / absent / lookup-…: could not be asked)",
    ["destination", "channel", "answer"],
)
DELIVERY_HELD = Counter("hub_delivery_held_for_consent_total", "Referrals held for consent", ["destination"])
DELIVERY_LATENCY = Histogram(
    "hub_delivery_latency_seconds", "Send to acknowledgement", ["destination", "channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# --- projections ---
LOG_BROKER_AVAILABLE = Gauge(
    "hub_log_broker_available",
    "1 when the last append was acknowledged in time, 0 when acknowledgements timed out (broker unavailable)",
)
PROJECTION_LAG = Gauge("hub_projection_lag_records", "Records behind the log end", ["topic", "partition"])
PROJECTION_PROGRESS = Gauge(
    "hub_projection_progress_timestamp_seconds",
    "When the projector last applied a batch or found itself caught up (liveness: stale = stuck)",
)
PROJECTION_EVENTS = Counter("hub_projection_events_total", "Events folded into read models", ["projection"])
PROJECTION_TX_LATENCY = Histogram(
    "hub_projection_transaction_seconds", "One batch transaction in PostgreSQL", ["projection"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# --- verification ---
VERIFY_OK = Gauge("hub_verify_ok", "1 when the last tamper-evidence check passed, 0 when it failed")
VERIFY_LAST_RUN = Gauge("hub_verify_last_run_timestamp_seconds", "When the last check ran")
VERIFY_BREAKS = Gauge("hub_verify_breaks", "Breaks found by the last check")
VERIFY_ORPHAN_COPIES = Gauge(
    "hub_verify_orphan_copies",
    "Earlier copies of indexed events left by a crash before the index commit (not breaks)",
)

# --- stored state mirrored by the read API on each scrape ---
DEADLETTERS_STORED = Gauge(
    "hub_deadletter_records", "Dead letters recorded in PostgreSQL per source family", ["source_family"]
)
ACCESS_LOG_APPENDS = Counter(
    "hub_api_access_log_appends_total", "Person-level reads written to the access log", ["action", "outcome"]
)
ACCESS_LOG_FAILURES = Counter(
    "hub_api_access_log_failures_total",
    "Refused person-level reads that could not be written to the access log (the refusal stood)",
)

# --- record MACs (only facts the hub appended are folded) ---
RECORDS_QUARANTINED = Counter(
    "hub_records_quarantined_total",
    "Consumed records refused (no valid record MAC, or a pre-MAC record the event index does not "
    "confirm) and moved to the quarantine dead-letter topic",
    ["consumer"],
)
