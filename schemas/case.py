"""Case-management facts. Partition key: the person pseudonym."""

from __future__ import annotations

from typing import Literal

from schemas.base import EventData, IncidentId, Pseudonym, Sealed, Timestamp, register


class _CaseEvent(EventData):
    family = "case"
    key_field = "person"
    case_id: str
    person: Pseudonym
    at: Timestamp


@register
class CaseOpened(_CaseEvent):
    """A case opened for the person; ``demographics`` (race, ethnicity, gender, birth date or
    age band as the case system records them) is sealed with the person's key."""

    event_type = "case.opened.v1"
    program: str
    incident_id: IncidentId | None = None
    demographics: Sealed | None = None


@register
class ContactLogged(_CaseEvent):
    event_type = "case.contact.logged.v1"
    contact_kind: Literal["in_person", "phone", "outreach", "video", "other"] = "in_person"
    incident_id: IncidentId | None = None
    note: Sealed | None = None


@register
class ServiceEnrolled(_CaseEvent):
    event_type = "case.service.enrolled.v1"
    service_type: str
    provider: str
    substance_use: bool = False


@register
class CaseClosed(_CaseEvent):
    event_type = "case.closed.v1"
    reason: str
