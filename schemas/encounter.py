"""Co-responder encounter facts: a clinician engaged, a person identified, the on-scene
outcome, and the co-responder's intake form (its submission and every amendment).
Partition key: the incident id (same partition as the dispatch facts' key)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints

from schemas.base import CustomValues, EventData, IncidentId, Outcome, Pseudonym, Sealed, Timestamp, register

#: how the co-responder team worked the call (``co_response``: the clinician rode along)
EncounterMode = Literal["co_response", "clinician_only", "phone", "follow_up"]
ENCOUNTER_MODES: tuple[str, ...] = get_args(EncounterMode)

#: force used by police during the encounter, as the co-responder recorded it (``none``: no
#: force; the most serious type when several were used)
UseOfForce = Literal[
    "none",
    "physical_control",
    "restraints",
    "oc_spray",
    "conducted_energy_device",
    "impact_weapon",
    "firearm_pointed",
    "firearm_discharged",
    "other",
]
USE_OF_FORCE: tuple[str, ...] = get_args(UseOfForce)


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


ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


@register
class IntakeRecorded(_EncounterEvent):
    """One revision of a co-responder's encounter form: ``revision`` 0 is the submission,
    1, 2, ... its amendments (an amendment is a new fact, never an edit; the highest
    revision of a ``submission_id`` is the form's current content). ``outcome`` is the
    on-scene outcome and ``use_of_force`` what police used (``None``: not recorded).
    The identifiers the person's pseudonym is made from never appear here; ``note`` (the
    free-text note and an amendment's reason) is sealed with the person's key, or with
    the incident's when no person was identified. ``custom``: the county-defined fields the
    form filled in (typed, checked against the county's definitions); a field declared
    sensitive is never here but sealed in ``note`` (under ``custom``)."""

    event_type = "encounter.intake.recorded.v2"
    submission_id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    revision: int = Field(0, ge=0)
    program: str
    clinician_id: str  # staff id, not PHI
    mode: EncounterMode
    outcome: Outcome
    use_of_force: UseOfForce | None = None
    services_offered: tuple[ServiceName, ...] = ()
    person: Pseudonym | None = None
    referral_ids: tuple[str, ...] = ()
    consent_ids: tuple[str, ...] = ()
    officer_released_at: Timestamp | None = None
    note: Sealed | None = None
    custom: CustomValues = Field(default_factory=dict)
