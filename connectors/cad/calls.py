"""The normalized CAD call and the dispatch facts it gives: one builder for every CAD source.

Each source translates its own format into a :class:`NormalizedCall` —
:mod:`connectors.cad.mapping` CSV and SoQL rows, :mod:`connectors.cad.eido` EIDO documents —
and :func:`call_events` turns it into facts the same way whatever the source (pure):

- ``CallReceived``: category and behavioral-health flag by the profile's rules;
- one unit fact per :class:`UnitStatus`, in order. A row-level time (no unit named) is one
  fact per call and kind; a status of a named unit is its own fact (record
  ``<incident id>/<unit>``, revision = its time), since a unit reports many times;
- ``CallDisposition`` when the call has a disposition code or text (outcome by the
  profile's vocabulary, ``unknown`` when it has none; dated ``disposition_at``, else the
  received time);
- ``CallRevised`` when the hub first saw another revision of the call
  (``first_revision`` given and different from ``call.revision``); its id carries the
  revision, and it is dated ``revised_at``.

Every other fact uses revision ``"0"`` (:data:`INITIAL_REVISION`) in its id, so the facts of
a call exist once whatever revision was seen first. The record id of a call's facts is its
incident id ``<agency>:<cad number>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from connectors.cad.profile import Profile, normalize_code
from connectors.core.records import Mapped
from hub.kernel.crypto import KeyDestroyedError, Keyring, incident_subject, seal, seal_context
from schemas.base import Area, CallCategory, Outcome, Sealed
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitEvent,
    UnitKind,
    UnitOnScene,
)
from schemas.envelope import Envelope, new_event

INITIAL_REVISION = "0"

UnitStatusName = Literal["dispatched", "enroute", "onscene", "cleared"]
UNIT_FACTS: dict[UnitStatusName, type[UnitEvent]] = {
    "dispatched": UnitDispatched,
    "enroute": UnitEnRoute,
    "onscene": UnitOnScene,
    "cleared": UnitCleared,
}


# --------------------------------------------------------------------------- vocabulary


def matches_any(texts: list[str | None], keywords: list[str] | tuple[str, ...]) -> bool:
    low = [t.casefold() for t in texts if t]
    return any(k.casefold() in t for t in low for k in keywords)


def is_behavioral_health(initial: str | None, final: str | None, profile: Profile) -> bool:
    """The agency's rule (default: suicide, crisis, mental / behavioral / emotional,
    welfare check or overdose in the initial or final call-type text)."""
    return matches_any([initial, final], profile.behavioral_health.keywords)


def categorize(
    initial: str | None, final: str | None, behavioral_health: bool, profile: Profile
) -> CallCategory:
    for candidate in (final, initial):
        if not candidate:
            continue
        for category, keywords in profile.category_rules():
            if matches_any([candidate], keywords):
                return category
    return "behavioral_health" if behavioral_health else "other"


def map_disposition(code: str | None, label: str | None, profile: Profile) -> tuple[Outcome, bool] | None:
    """(outcome, known) for a disposition code / text, or ``None`` when the row has none.
    The code is looked up first, then the text; an unmatched value is ``unknown``."""
    if code is None and label is None:
        return None
    for value in (code, label):
        if value is not None:
            outcome = profile.dispositions.get(normalize_code(value))
            if outcome is not None:
                return outcome, True
    return "unknown", False


# --------------------------------------------------------------------------- privacy


def blur(value: float | None, decimals: int | None) -> float | None:
    """A coordinate at the profile's precision (``None`` decimals: as published)."""
    return value if value is None or decimals is None else round(value, decimals)


def clear_label(label: str | None, profile: Profile) -> str | None:
    """The disposition text kept in clear: only a label the profile's vocabulary knows
    (a code's name); any other clearance text may name people and is sealed instead."""
    if label is None or normalize_code(label) not in profile.dispositions:
        return None
    return label


def seal_incident_text(
    keyring: Keyring | None, incident_id: str, field: str, value: str | None, *, source: str
) -> Sealed | None:
    """``value`` sealed with the incident's key; None without a value or a keyring (free
    text is never stored clear), or when the incident was erased with a linked person.
    The sealing context is the field of the call's initial-revision facts, so a retry
    seals byte-identically."""
    if not value or keyring is None:
        return None
    context = seal_context(source, incident_id, INITIAL_REVISION, field)
    try:
        return seal(keyring, incident_subject(incident_id), {field: value}, context=context)
    except KeyDestroyedError:
        return None


# --------------------------------------------------------------------------- the normalized call


@dataclass(frozen=True)
class UnitStatus:
    """A unit's status change (``unit_id`` ``None``: the row's time for the call's units)."""

    status: UnitStatusName
    at: datetime
    unit_id: str | None = None
    unit_kind: UnitKind = "police"


@dataclass(frozen=True)
class NormalizedCall:
    """One revision of one call as every CAD source gives it (times aware, UTC).

    ``revision`` names this revision (an updated-at, or a content hash); ``revised_at``
    dates its ``CallRevised``. ``disposition_at`` dates the disposition (``None``: the
    received time)."""

    agency: str
    cad_number: str
    received: datetime
    source_timezone: str
    revision: str
    revised_at: datetime
    call_type_initial: str | None = None
    call_type_final: str | None = None
    priority: str | None = None
    self_initiated: bool = False
    area: Area = field(default_factory=Area)
    longitude: float | None = None
    latitude: float | None = None
    units: tuple[UnitStatus, ...] = ()
    disposition_code: str | None = None
    disposition_text: str | None = None
    disposition_at: datetime | None = None
    #: free-text remarks (may name people): sealed per incident by :func:`call_events`
    remarks: str | None = None

    @property
    def incident_id(self) -> str:
        return f"{self.agency}:{self.cad_number}"


def call_events(
    call: NormalizedCall,
    profile: Profile,
    *,
    source: str,
    first_revision: str | None = None,
    keyring: Keyring | None = None,
) -> list[Envelope]:
    """The facts of one call revision (see the module docstring), in order: received, unit
    statuses, disposition, revised. Free text (remarks, a clearance text the vocabulary
    does not know) is sealed with the incident's key from ``keyring`` (dropped without one);
    coordinates are kept at the profile's precision."""
    initial, final = call.call_type_initial, call.call_type_final
    bh = is_behavioral_health(initial, final, profile)
    category = categorize(initial, final, bh, profile)
    incident_id = call.incident_id
    code, label = call.disposition_code, call.disposition_text
    disposition = map_disposition(code, label, profile)
    clear = clear_label(label, profile)

    def event(data: Any, record_id: str = incident_id, revision: str = INITIAL_REVISION) -> Envelope:
        return new_event(data, source=source, record_id=record_id, revision=revision)

    events = [
        event(
            CallReceived(
                incident_id=incident_id,
                agency=call.agency,
                cad_number=call.cad_number,
                at=call.received,
                source_timezone=call.source_timezone,
                call_type_initial=initial,
                call_type_final=final,
                priority=call.priority,
                category=category,
                behavioral_health=bh,
                self_initiated=call.self_initiated,
                area=call.area,
                longitude=blur(call.longitude, profile.coordinate_decimals),
                latitude=blur(call.latitude, profile.coordinate_decimals),
                remarks=seal_incident_text(keyring, incident_id, "remarks", call.remarks, source=source),
            )
        )
    ]
    for unit in call.units:
        fact = UNIT_FACTS[unit.status](
            incident_id=incident_id, unit_id=unit.unit_id, unit_kind=unit.unit_kind, at=unit.at
        )
        if unit.unit_id is None:
            events.append(event(fact))
        else:
            events.append(event(fact, f"{incident_id}/{unit.unit_id}", unit.at.isoformat()))
    if disposition is not None:
        events.append(
            event(
                CallDisposition(
                    incident_id=incident_id,
                    at=call.disposition_at or call.received,
                    disposition_code=code,
                    disposition_text=clear,
                    disposition_note=(
                        None if clear is not None
                        else seal_incident_text(keyring, incident_id, "disposition_text", label,
                                                source=source)
                    ),
                    outcome=disposition[0],
                )
            )
        )
    if first_revision is not None and call.revision != first_revision:
        events.append(
            event(
                CallRevised(
                    incident_id=incident_id,
                    at=call.revised_at,
                    revision=call.revision,
                    call_type_final=final,
                    priority=call.priority,
                    category=category,
                    behavioral_health=bh,
                    area=call.area,
                    disposition_code=code,
                    disposition_text=clear,
                    outcome=disposition[0] if disposition else None,
                ),
                revision=call.revision,
            )
        )
    return events


def map_call(
    call: NormalizedCall,
    profile: Profile,
    *,
    source: str,
    first_revision: str | None = None,
    keyring: Keyring | None = None,
) -> Mapped:
    """:func:`call_events` as a mapper's result, flagging a disposition the profile does
    not know (the runner counts it)."""
    disposition = map_disposition(call.disposition_code, call.disposition_text, profile)
    events = call_events(
        call, profile, source=source, first_revision=first_revision, keyring=keyring
    )
    return Mapped(tuple(events), unknown_disposition=disposition is not None and not disposition[1])
