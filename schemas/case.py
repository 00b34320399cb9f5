"""Case-management facts. Partition key: the person pseudonym."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CustomValues, EventData, IncidentId, Pseudonym, Sealed, Timestamp, register


class _CaseEvent(EventData):
    family = "case"
    key_field = "person"
    case_id: str
    person: Pseudonym
    at: Timestamp


class _IncidentCaseEvent(_CaseEvent):
    """A case record that may name the CAD incident it is about, and carry the county-defined
    fields the case system records for it (:mod:`hub.kernel.custom_fields`): ``custom`` as the
    case system gave them, the ones declared sensitive only in ``custom_sealed`` (the
    person's key)."""

    incident_id: IncidentId | None = None
    custom: CustomValues = Field(default_factory=dict)
    custom_sealed: Sealed | None = None


@register
class CaseOpened(_IncidentCaseEvent):
    """A case opened for the person; ``demographics`` (race, ethnicity, gender, birth date or
    age band as the case system records them) is sealed with the person's key."""

    event_type = "case.opened.v2"
    program: str
    demographics: Sealed | None = None


@register
class ContactLogged(_IncidentCaseEvent):
    event_type = "case.contact.logged.v2"
    contact_kind: Literal["in_person", "phone", "outreach", "video", "other"] = "in_person"
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
