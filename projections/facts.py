"""Facts as the projections see them: one normalized, immutable record per event.

A :class:`Fact` is built from an envelope (pure, :func:`fact_from_envelope`) and is what
the ``facts`` table stores: the projections' own state store, deduplicated by event id.
Every derived row is a function of a *set* of facts, never of their arrival order.

Each fact *touches* keys (:func:`fact_keys`): ``i:<incident>``, ``p:<pseudonym>``,
``r:<referral>``. Facts that share keys belong to one connected component; every read-model
row depends only on the facts of its component, so a batch recomputes exactly the
components its new facts touch (see :mod:`projections.fold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from schemas.base import EventData, event_class
from schemas.encounter import PersonIdentified
from schemas.envelope import Envelope

# The system a fact comes from, shown on timelines.
SYSTEM_BY_FAMILY = {
    "dispatch": "cad",
    "encounter": "case",
    "case": "case",
    "consent": "case",
    "identity": "hub",
    "erasure": "hub",
}
EHR_TYPES = ("referral.accepted", "referral.declined", "referral.completed", "referral.cancelled")
HUB_REFERRAL_TYPES = (
    "referral.delivered",
    "referral.rejected",
    "referral.delivery_failed",
    "referral.held_for_consent",
)


def system_of(event_type: str, family: str) -> str:
    """``cad`` / ``case`` / ``ehr`` / ``hub``: which system produced the fact."""
    kind = event_type.rsplit(".v", 1)[0]
    if family == "referral":
        if kind in EHR_TYPES:
            return "ehr"
        if kind in HUB_REFERRAL_TYPES:
            return "hub"
        return "case"
    return SYSTEM_BY_FAMILY.get(family, "hub")


@dataclass(frozen=True, slots=True)
class Fact:
    """One event, normalized. ``data`` is the payload's JSON (current version); sealed
    fields stay sealed. Identity is the event id; equality ignores the parsed payload.
    ``order`` and ``keys`` are computed once, on construction (the folds sort and group
    by them often; slots and plain attributes keep that cheap)."""

    event_id: str
    event_type: str
    family: str
    source: str
    system: str
    at: datetime
    recorded_at: datetime
    incident_id: str | None
    person: str | None
    other: str | None
    referral_id: str | None
    data: dict[str, Any] = field(hash=False)
    payload: EventData = field(compare=False, hash=False, repr=False)
    order: tuple[datetime, str] = field(init=False, compare=False, hash=False, repr=False)
    """Total order of facts: time in the world, then event id (ties are stable)."""
    keys: tuple[str, ...] = field(init=False, compare=False, hash=False, repr=False)
    """The component keys the fact touches (:func:`fact_keys`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", (self.at, self.event_id))
        object.__setattr__(self, "keys", fact_keys(self))


P = TypeVar("P", bound=EventData)


def with_payload(facts: Iterable[Fact], kind: type[P]) -> list[tuple[Fact, P]]:
    """The facts whose payload is a ``kind``, each with its payload typed as such (in the
    facts' order)."""
    return [(f, f.payload) for f in facts if isinstance(f.payload, kind)]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def make_fact(
    *, event_id: str, event_type: str, source: str, recorded_at: datetime, data: dict[str, Any]
) -> Fact:
    """Build a fact from stored parts (validates ``data`` against the event type)."""
    cls = event_class(event_type)
    payload = cls.model_validate(data)
    fields = payload.__dict__  # the validated fields (getattr of a missing one is slow in pydantic)
    return Fact(
        event_id=event_id,
        event_type=event_type,
        family=cls.family,
        source=source,
        system=system_of(event_type, cls.family),
        at=payload.occurred_at().astimezone(UTC),
        recorded_at=recorded_at.astimezone(UTC),
        incident_id=_str_or_none(fields.get("incident_id")),
        person=_str_or_none(fields.get("person")),
        other=_str_or_none(fields.get("other")),
        referral_id=_str_or_none(fields.get("referral_id")),
        data=payload.model_dump(mode="json"),
        payload=payload,
    )


def fact_from_envelope(envelope: Envelope) -> Fact:
    """The fact an envelope carries (upcast to the current version of its type).
    Raises ``KeyError`` for an unknown type and ``pydantic.ValidationError`` for bad data."""
    env = envelope.current()
    return make_fact(
        event_id=env.id,
        event_type=env.type,
        source=env.source,
        recorded_at=env.recordedat,
        data=env.data,
    )


def subject_person(fact: Fact) -> str | None:
    """The person a fact associates with its incident (the subject of the call).
    A caller or family member named on an incident is not associated with it."""
    if isinstance(fact.payload, PersonIdentified) and fact.payload.role != "subject":
        return None
    return fact.person


def fact_keys(fact: Fact) -> tuple[str, ...]:
    """The component keys a fact touches (see module docstring)."""
    keys: list[str] = []
    if fact.incident_id:
        keys.append("i:" + fact.incident_id)
    person = subject_person(fact)
    if person:
        keys.append("p:" + person)
    if fact.other:
        keys.append("p:" + fact.other)
    if fact.referral_id:
        keys.append("r:" + fact.referral_id)
    if not keys:  # a fact about nothing else still owns itself
        keys.append("e:" + fact.event_id)
    return tuple(keys)
