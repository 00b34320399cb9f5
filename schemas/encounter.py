"""Co-responder encounter facts: a clinician engaged, a person identified, the on-scene
outcome. Partition key: the incident id (same partition as the dispatch facts' key)."""

from __future__ import annotations

from typing import Literal

from schemas.base import EventData, IncidentId, Outcome, Pseudonym, Sealed, Timestamp, register

#: how the co-responder team worked the call
EncounterMode = Literal["co_response", "clinician_only", "phone", "follow_up"]


class _EncounterEvent(EventData):
    family = "encounter"
    key_field = "incident_id"
    incident_id: IncidentId
    at: Timestamp


@register
class ClinicianEngaged(_EncounterEvent):
    event_type = "encounter.clinician.engaged.v1"
    clinician_id: str  # staff id, not PHI
    program: str
    mode: EncounterMode = "co_response"


@register
class PersonIdentified(_EncounterEvent):
    """The person the call was about; demographics are sealed with that person's key."""

    event_type = "encounter.person.identified.v1"
    person: Pseudonym
    role: Literal["subject", "caller", "family", "other"] = "subject"
    demographics: Sealed | None = None


@register
class OnSceneOutcome(_EncounterEvent):
    """What the team did on scene. ``officer_released_at``: when police left the
    co-responder in charge (officer time returned)."""

    event_type = "encounter.outcome.recorded.v1"
    outcome: Outcome
    person: Pseudonym | None = None
    officer_released_at: Timestamp | None = None
    notes: Sealed | None = None
