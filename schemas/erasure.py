"""Erasure: the person's data key was destroyed, so their sealed payloads are unreadable
in every replay (crypto-shredding). Pseudonymous, non-PHI facts remain for aggregates."""

from __future__ import annotations

from schemas.base import EventData, Pseudonym, Timestamp, register


@register
class PersonErased(EventData):
    event_type = "erasure.person.erased.v1"
    family = "erasure"
    key_field = "person"
    person: Pseudonym
    at: Timestamp
    requested_by: str
    basis: str
