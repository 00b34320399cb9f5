"""Dispatch facts from police CAD feeds. Partition key: the incident id
(``<agency>:<cad number>``), so every fact of one call is ordered."""

from __future__ import annotations

from typing import Literal

from schemas.base import Area, CallCategory, EventData, IncidentId, Outcome, Sealed, Timestamp, register

UnitKind = Literal["police", "co_responder", "clinician", "ems", "fire", "other"]


class _IncidentEvent(EventData):
    family = "dispatch"
    key_field = "incident_id"
    incident_id: IncidentId


@register
class CallReceived(_IncidentEvent):
    """A call for service entered the CAD (time queued/received)."""

    event_type = "cad.call.received.v2"
    agency: str
    cad_number: str
    at: Timestamp
    source_timezone: str
    call_type_initial: str | None = None
    call_type_final: str | None = None
    priority: str | None = None
    category: CallCategory
    behavioral_health: bool
    self_initiated: bool = False
    area: Area = Area()
    longitude: float | None = None  # at the precision the CAD profile declares (blurred)
    latitude: float | None = None
    #: the call's free-text remarks (may name people), sealed with the incident's key
    remarks: Sealed | None = None


class UnitEvent(_IncidentEvent):
    unit_id: str | None = None
    unit_kind: UnitKind = "police"
    at: Timestamp


@register
class UnitDispatched(UnitEvent):
    event_type = "cad.unit.dispatched.v1"


@register
class UnitEnRoute(UnitEvent):
    event_type = "cad.unit.enroute.v1"


@register
class UnitOnScene(UnitEvent):
    event_type = "cad.unit.onscene.v1"


@register
class UnitCleared(UnitEvent):
    event_type = "cad.unit.cleared.v1"


@register
class CallDisposition(_IncidentEvent):
    """How the CAD closed the call; ``outcome`` is the normalized vocabulary."""

    event_type = "cad.call.disposition.v1"
    at: Timestamp
    disposition_code: str | None = None
    disposition_text: str | None = None  # only a label of the profile's vocabulary
    #: clearance text beyond the code (may name people), sealed with the incident's key
    disposition_note: Sealed | None = None
    outcome: Outcome


@register
class CallRevised(_IncidentEvent):
    """The source republished a call with changes; non-null fields replace earlier values."""

    event_type = "cad.call.revised.v1"
    at: Timestamp
    revision: str
    call_type_final: str | None = None
    priority: str | None = None
    category: CallCategory | None = None
    behavioral_health: bool | None = None
    area: Area | None = None
    disposition_code: str | None = None
    disposition_text: str | None = None
    outcome: Outcome | None = None
