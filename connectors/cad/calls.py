"""The normalized CAD call and the dispatch facts it gives: one builder for every CAD source.

Each source translates its own format into a :class:`NormalizedCall` —
:mod:`connectors.cad.mapping` CSV and SoQL rows, :mod:`connectors.cad.eido` EIDO documents —
and :func:`call_events` turns it into facts the same way whatever the source (pure):

- ``CallReceived``: the call types, priority and area as the source wrote them, and the name
  of the vocabulary its codes are in (the profile's) — never what they mean: the
  projections apply the vocabulary (:mod:`hub.kernel.vocabulary`);
- one unit fact per :class:`UnitStatus`, in order. A row-level time (no unit named) is one
  fact per call and kind; a status of a named unit is its own fact (record
  ``<incident id>/<unit>``, revision = its time), since a unit reports many times. A row's
  closed time is a ``UnitCleared`` of no named unit: the only clear time a row gives;
- ``CallDisposition`` when the call has a disposition code or text (dated
  ``disposition_at``, else the received time);
- ``CallRevised`` when the hub first saw another revision of the call
  (``first_revision`` given and different from ``call.revision``): the revision's received
  time, call types, area, disposition and row-level times; its id carries the revision, and
  it is dated ``revised_at``.

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
from schemas.base import Area
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    CrisisTemplate,
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


# --------------------------------------------------------------------------- the normalized call


@dataclass(frozen=True)
class CrisisFlags:
    """A crisis template's Y/N indicators (None: blank or not given)."""

    use_of_force: bool | None = None
    cit_requested: bool | None = None
    cit_dispatched: bool | None = None
    cit_arrived: bool | None = None


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
    received time). ``disposition_rows``: the source repeats the call once per disposition,
    so each disposition is its own fact (record ``<incident id>/<disposition>``) and a
    revision does not carry one. ``crisis``: the row is a crisis template."""

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
    disposition_rows: bool = False
    crisis: CrisisFlags | None = None
    #: county-defined fields (field, the source's text) the profile maps
    custom: tuple[tuple[str, str], ...] = ()

    @property
    def incident_id(self) -> str:
        return f"{self.agency}:{self.cad_number}"


def call_events(
    call: NormalizedCall, profile: Profile, *, source: str, first_revision: str | None = None
) -> list[Envelope]:
    """The facts of one call revision (see the module docstring), in order: received, unit
    statuses, disposition, revised."""
    incident_id = call.incident_id
    code, label = call.disposition_code, call.disposition_text
    vocabulary = profile.vocab.name if profile.vocab is not None else None

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
                vocabulary=vocabulary,
                call_type_initial=call.call_type_initial,
                call_type_final=call.call_type_final,
                priority=call.priority,
                self_initiated=call.self_initiated,
                area=call.area,
                longitude=call.longitude,
                latitude=call.latitude,
                custom=dict(call.custom),
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
    if call.crisis is not None:
        flags = call.crisis
        events.append(event(CrisisTemplate(
            incident_id=incident_id, at=call.received, template_id=call.cad_number,
            use_of_force=flags.use_of_force, cit_requested=flags.cit_requested,
            cit_dispatched=flags.cit_dispatched, cit_arrived=flags.cit_arrived,
        )))
    if code is not None or label is not None:
        disposition = CallDisposition(
            incident_id=incident_id, at=call.disposition_at or call.received, disposition_code=code,
            disposition_text=label,
        )
        if call.disposition_rows:  # one fact per disposition of the call
            events.append(event(disposition, f"{incident_id}/{normalize_code(code or label or '')}"))
        else:
            events.append(event(disposition))
    if first_revision is not None and call.revision != first_revision:
        row_times = {u.status: u.at for u in call.units if u.unit_id is None}
        events.append(
            event(
                CallRevised(
                    incident_id=incident_id,
                    at=call.revised_at,
                    revision=call.revision,
                    received_at=call.received,
                    call_type_initial=call.call_type_initial,
                    call_type_final=call.call_type_final,
                    priority=call.priority,
                    area=call.area,
                    disposition_code=None if call.disposition_rows else code,
                    disposition_text=None if call.disposition_rows else label,
                    dispatched_at=row_times.get("dispatched"),
                    enroute_at=row_times.get("enroute"),
                    onscene_at=row_times.get("onscene"),
                    cleared_at=row_times.get("cleared"),
                ),
                revision=call.revision,
            )
        )
    return events


def map_call(
    call: NormalizedCall, profile: Profile, *, source: str, first_revision: str | None = None
) -> Mapped:
    """:func:`call_events` as a mapper's result, flagging a disposition the profile's
    vocabulary does not know (the runner counts it: an operator's cue to extend the
    vocabulary; the facts are the same either way)."""
    events = call_events(call, profile, source=source, first_revision=first_revision)
    vocab = profile.vocab
    meaning = vocab.outcome(call.disposition_code, call.disposition_text) if vocab is not None else None
    return Mapped(tuple(events), unknown_disposition=meaning is not None and not meaning[1])
