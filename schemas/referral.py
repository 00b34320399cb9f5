"""Referral facts: the request, its delivery to an EHR and the EHR's answers.
Partition key: the person pseudonym (all of one person's referrals are ordered)."""

from __future__ import annotations

from typing import Literal

from schemas.base import EventData, IncidentId, Pseudonym, Sealed, Timestamp, register

Channel = Literal["fhir", "hl7v2"]
Priority = Literal["routine", "urgent", "asap", "stat"]


class _ReferralEvent(EventData):
    family = "referral"
    key_field = "person"
    referral_id: str
    person: Pseudonym
    at: Timestamp


@register
class ReferralRequested(_ReferralEvent):
    """The team asks a provider to take a person on. ``substance_use`` marks a 42 CFR
    Part 2 record: it is disclosed only under a recorded consent covering ``destination``."""

    event_type = "referral.requested.v1"
    incident_id: IncidentId | None = None
    destination: str
    channel: Channel
    service_type: str
    priority: Priority = "routine"
    substance_use: bool = False
    requester: str
    reason: Sealed | None = None


@register
class ReferralDelivered(_ReferralEvent):
    event_type = "referral.delivered.v1"
    destination: str
    channel: Channel
    remote_id: str | None = None
    ack_code: str | None = None
    attempts: int = 1


@register
class ReferralRejected(_ReferralEvent):
    event_type = "referral.rejected.v1"
    destination: str
    channel: Channel
    code: str
    detail: str


@register
class ReferralDeliveryFailed(_ReferralEvent):
    event_type = "referral.delivery_failed.v1"
    destination: str
    channel: Channel
    attempts: int
    last_error: str


@register
class ReferralHeldForConsent(_ReferralEvent):
    event_type = "referral.held_for_consent.v1"
    destination: str
    reason: str


class _ReferralAnswer(_ReferralEvent):
    """An EHR's answer; ``demographics`` (what the EHR's record says of the person's race,
    ethnicity, gender and birth date) is sealed with the person's key."""

    remote_id: str | None = None
    source_status: str | None = None
    note: Sealed | None = None
    demographics: Sealed | None = None


@register
class ReferralAccepted(_ReferralAnswer):
    event_type = "referral.accepted.v1"


@register
class ReferralDeclined(_ReferralAnswer):
    event_type = "referral.declined.v1"


@register
class ReferralCompleted(_ReferralAnswer):
    event_type = "referral.completed.v1"


@register
class ReferralCancelled(_ReferralAnswer):
    event_type = "referral.cancelled.v1"
