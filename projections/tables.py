"""The read-model tables: names, columns (in storage order) and primary keys.

One description serves the pure folds (rows are dicts keyed by these columns), the
migrations (``projections/migrations``), bulk loading (``copy_records_to_table`` takes the
column order from here) and the replay comparison (tables are compared by primary key).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the jsonb columns of every table: a fold's row holds their values, a COPY record their
#: JSON text, and a stored row read back holds their text until decoded
JSON_COLUMNS = frozenset({"data", "detail", "custom"})


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    description: str = ""

    def pk(self, row: dict) -> tuple:
        return tuple(row[c] for c in self.key)

    def record(self, row: dict) -> tuple:
        return tuple(row[c] for c in self.columns)


FACTS = Table(
    "facts",
    ("event_id", "event_type", "family", "source", "system", "at", "recorded_at", "incident_id",
     "person", "other", "referral_id", "keys", "data"),
    ("event_id",),
    "the projections' state store: every fact consumed, once (dedup by event id)",
)
INCIDENT_SUMMARY = Table(
    "incident_summary",
    ("incident_id", "agency", "received_at", "opened_at", "call_category", "behavioral_health",
     "precinct", "district", "sector", "beat", "cad_outcome", "onscene_outcome", "outcome",
     "referral_made", "connected_to_services", "first_dispatched_at", "first_enroute_at",
     "first_arrived_at", "last_cleared_at", "response_seconds", "time_on_scene_seconds",
     "co_responder", "clinician_engaged_at", "officer_released_at", "officer_time_returned_seconds",
     "persons", "fact_count", "vocabulary", "use_of_force", "program", "mode", "team", "referral_type",
     "custom"),
    ("incident_id",),
    "one row per incident: call attributes, outcome, response times, persons, use of force, the "
    "vocabulary (name@version) that classified it, and the county-defined fields (custom)",
)
TIMELINE_ENTRIES = Table(
    "timeline_entries",
    ("event_id", "at", "system", "source", "event_type", "incident_id", "person", "referral_id",
     "summary", "detail", "visible_to", "part2"),
    ("event_id",),
    "every fact as a timeline line, with its source system and visibility per role",
)
PERSON_TIMELINE = Table(
    "person_timeline",
    ("person", "event_id", "at"),
    ("person", "event_id"),
    "which timeline entries belong to a person (canonical pseudonym of the linked cluster)",
)
PERSON_CLUSTERS = Table(
    "person_clusters",
    ("pseudonym", "canonical"),
    ("pseudonym",),
    "identity resolution: each pseudonym's canonical pseudonym (smallest of its cluster)",
)
PERSON_CONTACTS = Table(
    "person_contacts",
    ("person", "incident_id", "contact_at"),
    ("person", "incident_id"),
    "each incident in which a person (canonical) was the subject",
)
PERSON_SUMMARY = Table(
    "person_summary",
    ("person", "members", "contacts", "first_contact_at", "last_contact_at",
     "max_contacts_in_window", "enrolled_in_services", "first_enrolled_at"),
    ("person",),
    "repeat-encounter state per person (canonical)",
)
REFERRAL_FUNNEL = Table(
    "referral_funnel",
    ("referral_id", "person", "incident_id", "destination", "channel", "service_type", "substance_use",
     "requested_at", "delivered_at", "accepted_at", "completed_at", "closed_at", "status",
     "seconds_requested_to_delivered", "seconds_delivered_to_accepted", "seconds_accepted_to_completed",
     "furthest_stage", "implied_stages"),
    ("referral_id",),
    "referral funnel: requested → delivered → accepted → completed (monotone: implied stages "
    "count as reached), with time in each stage",
)
CONSENTS = Table(
    "consents",
    ("person", "consent_id", "granted_at", "recipients", "scope", "purpose", "expires_at", "revoked_at"),
    ("person", "consent_id"),
    "recorded consents (Part 2 disclosure decisions are made on these)",
)
PERSON_DEMOGRAPHICS = Table(
    "person_demographics",
    ("person", "event_id", "source", "at", "kid", "nonce", "ciphertext"),
    ("person", "event_id"),
    "every demographics report of a person (canonical), still sealed with the person's key: "
    "source intake / case / ehr; the report opens them (projections/demographics.py)",
)
OUTCOME_COUNTS = Table(
    "outcome_counts",
    ("period_kind", "period_start", "area_kind", "area", "call_category", "behavioral_health",
     "metric", "value"),
    ("period_kind", "period_start", "area_kind", "area", "call_category", "behavioral_health", "metric"),
    "incident counts by period, area, call category and outcome metric (internal, not suppressed)",
)
POSITIONS = Table(
    "projection_positions",
    ("topic", "partition", "next_offset"),
    ("topic", "partition"),
    "the next offset to consume per partition, committed with the rows it produced",
)

# Tables derived from facts (rebuilt per component); counts are maintained by deltas.
DERIVED = (INCIDENT_SUMMARY, TIMELINE_ENTRIES, PERSON_TIMELINE, PERSON_CLUSTERS, PERSON_CONTACTS,
           PERSON_SUMMARY, REFERRAL_FUNNEL, CONSENTS, PERSON_DEMOGRAPHICS)
READ_MODELS = (FACTS, *DERIVED, OUTCOME_COUNTS)
ALL_TABLES = (*READ_MODELS, POSITIONS)
