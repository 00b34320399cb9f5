"""The normalized CAD call and the dispatch facts it gives: one builder for every CAD source.

Each source translates its own format into a :class:`NormalizedCall` —
:mod:`connectors.cad.mapping` CSV and SoQL rows, :mod:`connectors.cad.eido` EIDO documents —
and :func:`call_events` turns it into facts the same way whatever the source (pure):

- ``CallReceived``: the call types, priority and area as the source wrote them, and the name
  of the vocabulary its codes are in (the profile's) — never what they mean: the
  projections apply the vocabulary (:mod:`hub.kernel.vocabulary`); its remarks sealed with
  the incident's key, its coordinates at the profile's precision;
- one unit fact per :class:`UnitStatus`, in order. A row-level time (no unit named) is one
  fact per call and kind; a status of a named unit is its own fact (record
  ``<incident id>/<unit>``, revision = its time), since a unit reports many times. A row's
  closed time is a ``UnitCleared`` of no named unit: the only clear time a row gives;
- ``CallDisposition`` when the call has a disposition code or text (dated
  ``disposition_at``, else the received time). The code is kept clear; the text is kept
  clear only when the profile's vocabulary (the one in force at ingest) knows it
  (:func:`clear_label`), else it is sealed with the incident's key (``disposition_note``):
  a clearance text may name people. The projections open it to classify it;
- ``CallRevised`` when the hub first saw another revision of the call
  (``first_revision`` given and different from ``call.revision``): the revision's received
  time, call types, area, disposition, row-level times and county-defined fields; its id
  carries the revision, and it is dated ``revised_at``.

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
from schemas.base import Area, Sealed
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


# --------------------------------------------------------------------------- privacy


def blur(value: float | None, decimals: int | None) -> float | None:
    """A coordinate at the profile's precision (``None`` decimals: as published)."""
    return value if value is None or decimals is None else round(value, decimals)


def clear_label(label: str | None, profile: Profile) -> str | None:
    """The disposition text kept in clear: only a label the vocabulary in force at ingest
    (the profile's) knows — a code's name, a process label. Any other text may be free text
    a dispatcher typed (it may name people) and is sealed instead; the projections open it
    to classify it, so a later vocabulary that names it still does."""
    vocab = profile.vocab
    if label is None or vocab is None or not vocab.knows(label):
        return None
    return label


def seal_incident_text(
    keyring: Keyring | None,
    incident_id: str,
    field: str,
    value: str | None,
    *,
    source: str,
    record_id: str | None = None,
    revision: str = INITIAL_REVISION,
) -> Sealed | None:
    """``value`` sealed with the incident's key; None without a value or a keyring (free
    text is never stored clear), or when the incident was erased with a linked person.
    The sealing context is the field of the fact it is sealed into (``record_id``, default
    the incident id, and ``revision``), so a retry seals byte-identically."""
    if not value or keyring is None:
        return None
    context = seal_context(source, record_id or incident_id, revision, field)
    try:
        return seal(keyring, incident_subject(incident_id), {field: value}, context=context)
    except KeyDestroyedError:
        return None


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
    statuses, disposition, revised. Free text (remarks, a disposition text the profile's
    vocabulary does not know) is sealed with the incident's key from ``keyring`` (dropped
    without one); coordinates are kept at the profile's precision."""
    incident_id = call.incident_id
    code, label = call.disposition_code, call.disposition_text
    vocabulary = profile.vocab.name if profile.vocab is not None else None
    clear = clear_label(label, profile)

    def sealed_label(record_id: str, revision: str) -> Sealed | None:
        """The disposition text sealed into the fact ``record_id``/``revision`` (None when
        it is kept clear)."""
        if clear is not None:
            return None
        return seal_incident_text(keyring, incident_id, "disposition_text", label, source=source,
                                  record_id=record_id, revision=revision)

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
                longitude=blur(call.longitude, profile.coordinate_decimals),
                latitude=blur(call.latitude, profile.coordinate_decimals),
                remarks=seal_incident_text(keyring, incident_id, "remarks", call.remarks, source=source),
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
        # one fact per disposition of the call when the source lists them one per row
        record = incident_id
        if call.disposition_rows:
            record = f"{incident_id}/{normalize_code(code or label or '')}"
        events.append(event(CallDisposition(
            incident_id=incident_id, at=call.disposition_at or call.received, disposition_code=code,
            disposition_text=clear, disposition_note=sealed_label(record, INITIAL_REVISION),
        ), record))
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
                    disposition_text=None if call.disposition_rows else clear,
                    disposition_note=(
                        None if call.disposition_rows else sealed_label(incident_id, call.revision)
                    ),
                    dispatched_at=row_times.get("dispatched"),
                    enroute_at=row_times.get("enroute"),
                    onscene_at=row_times.get("onscene"),
                    cleared_at=row_times.get("cleared"),
                    custom=dict(call.custom),
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
    """:func:`call_events` as a mapper's result, flagging a disposition the profile's
    vocabulary does not know (the runner counts it: an operator's cue to extend the
    vocabulary; the facts keep the source's words either way, a text it does not know sealed)."""
    events = call_events(call, profile, source=source, first_revision=first_revision, keyring=keyring)
    vocab = profile.vocab
    meaning = vocab.outcome(call.disposition_code, call.disposition_text) if vocab is not None else None
    return Mapped(tuple(events), unknown_disposition=meaning is not None and not meaning[1])
