"""Consent facts (42 CFR Part 2 and general disclosure). Partition key: the person."""

from __future__ import annotations

from typing import Literal

from schemas.base import EventData, Pseudonym, Timestamp, register

Scope = Literal["part2", "general"]


@register
class ConsentGranted(EventData):
    """Permission to disclose ``scope`` records to ``recipients`` for ``purpose`` until
    ``expires_at`` (None = until revoked)."""

    event_type = "consent.granted.v1"
    family = "consent"
    key_field = "person"
    consent_id: str
    person: Pseudonym
    at: Timestamp
    recipients: tuple[str, ...]
    scope: tuple[Scope, ...]
    purpose: str = "treatment"
    expires_at: Timestamp | None = None


@register
class ConsentRevoked(EventData):
    event_type = "consent.revoked.v1"
    family = "consent"
    key_field = "person"
    consent_id: str
    person: Pseudonym
    at: Timestamp
