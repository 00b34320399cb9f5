"""Base class, registry and shared value types for event payloads.

Invariants:
- every payload model is frozen and forbids unknown fields;
- every concrete event class declares ``event_type`` (``<family>.<noun>.<verb>.v<N>``),
  ``family`` (which fact topic it goes to) and ``key_field`` (the field whose value is
  the partition key: an incident id or a person pseudonym), and registers itself;
- person identifiers are pseudonyms (``psn_`` + 32 hex digits), never clear identifiers;
- clinical / PHI content travels only inside :class:`Sealed` (encrypted per person).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Strict, StringConstraints

FAMILIES = ("dispatch", "encounter", "referral", "case", "consent", "identity", "erasure")

Pseudonym = Annotated[str, StringConstraints(pattern=r"^psn_[0-9a-f]{32}$")]
IncidentId = Annotated[str, StringConstraints(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9_.-]+:.+$")]
Timestamp = AwareDatetime

# The hub's normalized outcome vocabulary (a vocabulary file maps CAD dispositions here; on-scene
# outcomes are recorded in it). ``administrative``: a process code (unfounded, priority handling,
# a problem-solving project) that says nothing about how the person was treated.
Outcome = Literal[
    "no_enforcement",
    "voluntary_transport",
    "involuntary_hold",
    "emergency_department",
    "arrest",
    "citation",
    "referral",
    "unable_to_locate",
    "cancelled",
    "administrative",
    "unknown",
]
OUTCOMES: tuple[str, ...] = get_args(Outcome)

# Normalized call categories.
CallCategory = Literal[
    "behavioral_health", "welfare", "violent", "property", "traffic", "medical", "disturbance", "other"
]
CALL_CATEGORIES: tuple[str, ...] = get_args(CallCategory)


class Frozen(BaseModel):
    """A frozen value object that forbids unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Sealed(Frozen):
    """A payload encrypted with one person's data key (AES-256-GCM, AAD = key id).

    Destroying the person's key (erasure) makes every copy in the log unreadable:
    that is the crypto-shredding guarantee. ``kid`` names the key, never the person.
    """

    alg: Literal["A256GCM"] = "A256GCM"
    kid: str
    nonce: str  # base64
    ciphertext: str  # base64


class Area(Frozen):
    """Where a call happened, at the coarsest grain an agency publishes."""

    precinct: str | None = None
    district: str | None = None
    sector: str | None = None
    beat: str | None = None


#: a county-defined field's name (declared in the county's definitions file,
#: :mod:`hub.kernel.custom_fields`)
CustomFieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
#: a county-defined field's value as its source gave it: a CAD column's text, or the intake
#: form's typed value (text of an enum, a whole number, true/false, a date as YYYY-MM-DD)
CustomValue = (
    Annotated[bool, Strict()] | Annotated[int, Strict()] | Annotated[str, StringConstraints(max_length=200)]
)
CustomValues = dict[CustomFieldName, CustomValue]


class EventData(Frozen):
    """Base of every event payload."""

    event_type: ClassVar[str]
    family: ClassVar[str]
    key_field: ClassVar[str]
    # time field that says when the fact happened in the world
    time_field: ClassVar[str] = "at"

    def partition_key(self) -> str:
        return str(getattr(self, self.key_field))

    def occurred_at(self) -> datetime:
        return getattr(self, self.time_field)

    @classmethod
    def fact_kind(cls) -> str:
        """The event type without its version: part of the deterministic id."""
        return cls.event_type.rsplit(".v", 1)[0]


EVENT_TYPES: dict[str, type[EventData]] = {}


def register(cls: type[EventData]) -> type[EventData]:
    """Class decorator: add an event type to the registry (each name once)."""
    if cls.event_type in EVENT_TYPES:
        raise ValueError(f"event type registered twice: {cls.event_type}")
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.event_type}: unknown family {cls.family}")
    EVENT_TYPES[cls.event_type] = cls
    return cls


def event_class(event_type: str) -> type[EventData]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}") from None


def dump(data: EventData) -> dict[str, Any]:
    return data.model_dump(mode="json")
