"""Pure mapping of one CAD row (a CSV row or an open-data JSON row) into dispatch facts.

The row is read with its profile into a :class:`CadRow`, translated into a
:class:`~connectors.cad.calls.NormalizedCall` (:meth:`CadRow.call`), and the facts are
built by :func:`connectors.cad.calls.call_events`: ``CallReceived`` (+ ``UnitDispatched``
/ ``UnitEnRoute`` / ``UnitOnScene`` for each time the row carries, + ``CallDisposition``
when it has a disposition). Rows the
source marks duplicate / void / test → :class:`Exclusion`. Unparseable times or numbers,
a missing CAD number or received time, a wrong column count → :class:`Rejection`.
A disposition the profile's vocabulary does not know is flagged (for the metric); the
facts keep the codes either way — their meaning is applied by the projections.

Revisions: open-data feeds republish a row under the same CAD number with a newer
updated-at; CSV re-exports republish it with changed content and no updated-at (then
the revision is a hash of the row's mapped content). The facts of a row's first revision
use revision ``"0"`` in their ids (so they exist once per call whatever revision was
seen first); a later, different revision adds one ``CallRevised`` whose id carries that
revision.

Times: naive source times are agency-local (``profile.timezone``), stored as UTC; the
zone is recorded in ``CallReceived.source_timezone``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from connectors.cad.calls import (
    CrisisFlags,
    NormalizedCall,
    UnitStatus,
    UnitStatusName,
    clear_label,
    map_call,
)
from connectors.cad.fast import REFERENCE, FastRow, FastRows
from connectors.cad.profile import NormalizedField, Profile, normalize_code
from connectors.cad.rowvalues import CONTENT_REVISION_PREFIX, NO, YES, FieldError
from connectors.core.records import Exclusion, Mapped, MapResult, RawRecord, Rejection, RevisionKey
from hub.kernel.crypto import Keyring, incident_subject
from schemas.base import Area


def text(fields: dict[str, Any], column: str | None) -> str | None:
    """The stripped value of ``column`` (``None`` when the profile has no such column,
    the row lacks it, or it is blank)."""
    if not column:
        return None
    value = fields.get(column)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def parse_time(value: str, profile: Profile, column: str) -> datetime:
    """Parse a source time with the profile's formats (``iso`` = ISO 8601); naive times
    are agency-local. Returns an aware UTC datetime."""
    parsed: datetime | None = None
    for fmt in profile.time_formats:
        try:
            if fmt == "iso":
                parsed = datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value else value)
            else:
                parsed = datetime.strptime(value, fmt)
        except ValueError:
            continue
        break
    if parsed is None:
        raise FieldError(f"{column}: unparseable time (expected {' or '.join(profile.time_formats)})")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=profile.zone)
    return parsed.astimezone(UTC)


def optional_time(fields: dict[str, Any], profile: Profile, name: NormalizedField) -> datetime | None:
    column = profile.fields.get(name)
    value = text(fields, column)
    return None if value is None else parse_time(value, profile, column or name)


def optional_float(fields: dict[str, Any], profile: Profile, name: NormalizedField) -> float | None:
    column = profile.fields.get(name)
    value = text(fields, column)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise FieldError(f"{column}: not a number") from None


def optional_flag(fields: dict[str, Any], profile: Profile, name: NormalizedField) -> bool | None:
    """A Y/N indicator column as a boolean; blank or any other mark (``-``) is None."""
    value = text(fields, profile.fields.get(name))
    if value is None:
        return None
    word = normalize_code(value)
    return True if word in YES else False if word in NO else None


def exclusion_reason(fields: dict[str, Any], profile: Profile) -> str | None:
    for rule in profile.exclude:
        value = text(fields, rule.field)
        if value is not None and normalize_code(value) in {normalize_code(v) for v in rule.values}:
            return f"{rule.field} marks the row {normalize_code(value)}"
    return None


@dataclass(frozen=True)
class CadRow:
    """The normalized content of one CAD row (everything the mapper reads from it).

    Built by :func:`read_row`; ``content_hash`` digests it so that a re-export which
    changed a row is told apart from one that repeats it."""

    cad_number: str
    received: datetime
    dispatched: datetime | None
    enroute: datetime | None
    onscene: datetime | None
    closed: datetime | None
    updated: datetime | None
    call_type_initial: str | None
    call_type_final: str | None
    priority: str | None
    disposition_code: str | None
    disposition_text: str | None
    area: Area
    longitude: float | None
    latitude: float | None
    self_initiated: bool
    crisis: CrisisFlags | None = None
    disposition_rows: bool = False
    #: county-defined fields (field, the column's text), sorted by field
    custom: tuple[tuple[str, str], ...] = ()
    remarks: str | None = None  # free text: sealed per incident, not part of the content hash

    def content_hash(self) -> str:
        """``sha256:`` + 16 hex digits over the mapped fields (times as UTC, texts
        normalized as codes so case or spacing changes in a re-export are not revisions;
        the CAD number and the updated-at are not content; nor is the disposition of an
        export that repeats a record once per disposition)."""
        def t(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def c(value: str | None) -> str | None:
            return normalize_code(value) if value else None

        content: dict[str, Any] = {
            "received": t(self.received),
            "dispatched": t(self.dispatched),
            "enroute": t(self.enroute),
            "onscene": t(self.onscene),
            "closed": t(self.closed),
            "call_type_initial": c(self.call_type_initial),
            "call_type_final": c(self.call_type_final),
            "priority": c(self.priority),
            "disposition_code": None if self.disposition_rows else c(self.disposition_code),
            "disposition_text": None if self.disposition_rows else c(self.disposition_text),
            "area": {k: c(v) for k, v in self.area.model_dump().items()},
            "longitude": self.longitude,
            "latitude": self.latitude,
            "self_initiated": self.self_initiated,
        }
        if self.custom:  # only then: rows of profiles without custom fields keep their hash
            content["custom"] = [[k, c(v)] for k, v in self.custom]
        if self.crisis is not None:
            content["crisis"] = [self.crisis.use_of_force, self.crisis.cit_requested,
                                 self.crisis.cit_dispatched, self.crisis.cit_arrived]
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        return CONTENT_REVISION_PREFIX + digest[:16]

    @cached_property
    def revision(self) -> str:
        """The row's revision: its updated-at (UTC ISO 8601) when the source gives one,
        else the content hash (CSV exports that republish revised rows without an
        updated-at column). Computed once per row."""
        return self.updated.isoformat() if self.updated else self.content_hash()

    @property
    def latest_time(self) -> datetime:
        """The latest time the row carries (orders a content revision that has no
        observation time)."""
        times = [self.received, self.dispatched, self.enroute, self.onscene, self.closed]
        return max(x for x in times if x is not None)

    def revised_at(self, observed_at: datetime | None) -> datetime:
        """When this revision was published: its updated-at, else the later of the
        record's ``observed_at`` and :attr:`latest_time`."""
        if self.updated is not None:
            return self.updated
        if observed_at is None:
            return self.latest_time
        return max(observed_at.astimezone(UTC), self.latest_time)

    def call(self, profile: Profile, observed_at: datetime | None) -> NormalizedCall:
        """The row as a normalized call of ``profile``'s agency: the row's dispatched /
        en-route / on-scene / closed times are unit statuses of no named unit (closed =
        cleared); the disposition is dated by the closed time, else the on-scene time (a
        date for the fact only: the scene's end is a clear time, never this fallback)."""
        times: tuple[tuple[UnitStatusName, datetime | None], ...] = (
            ("dispatched", self.dispatched),
            ("enroute", self.enroute),
            ("onscene", self.onscene),
            ("cleared", self.closed),
        )
        return NormalizedCall(
            agency=profile.agency,
            cad_number=self.cad_number,
            received=self.received,
            source_timezone=profile.timezone,
            revision=self.revision,
            revised_at=self.revised_at(observed_at),
            call_type_initial=self.call_type_initial,
            call_type_final=self.call_type_final,
            priority=self.priority,
            self_initiated=self.self_initiated,
            area=self.area,
            longitude=self.longitude,
            latitude=self.latitude,
            units=tuple(UnitStatus(status, at) for status, at in times if at is not None),
            disposition_code=self.disposition_code,
            disposition_text=self.disposition_text,
            disposition_at=self.closed or self.onscene,
            disposition_rows=self.disposition_rows,
            crisis=self.crisis,
            custom=self.custom,
            remarks=self.remarks,
        )


def read_row(fields: dict[str, Any], profile: Profile) -> CadRow | Rejection:
    """Parse one row with ``profile`` (pure). Raises :class:`FieldError` for an
    unreadable value; returns a :class:`Rejection` for a missing CAD number or received
    time."""
    p = profile
    col = p.fields.get
    cad = text(fields, col("cad_number"))
    if cad is None:
        return Rejection("validate", f"{col('cad_number')}: CAD number is blank")
    received = optional_time(fields, p, "received_at")
    if received is None:
        return Rejection("validate", f"{col('received_at')}: received time is blank")
    self_initiated = False
    if p.self_initiated is not None:
        flag = text(fields, p.self_initiated.field)
        self_initiated = flag is not None and normalize_code(flag) in {
            normalize_code(v) for v in p.self_initiated.values
        }
    return CadRow(
        cad_number=cad,
        received=received,
        dispatched=optional_time(fields, p, "dispatched_at"),
        enroute=optional_time(fields, p, "enroute_at"),
        onscene=optional_time(fields, p, "onscene_at"),
        closed=optional_time(fields, p, "closed_at"),
        updated=optional_time(fields, p, "updated_at"),
        call_type_initial=text(fields, col("call_type_initial")),
        call_type_final=text(fields, col("call_type_final")),
        priority=text(fields, col("priority")),
        disposition_code=text(fields, col("disposition_code")),
        disposition_text=text(fields, col("disposition_text")),
        area=Area(
            precinct=text(fields, col("precinct")),
            district=text(fields, col("district")),
            sector=text(fields, col("sector")),
            beat=text(fields, col("beat")),
        ),
        longitude=optional_float(fields, p, "longitude"),
        latitude=optional_float(fields, p, "latitude"),
        self_initiated=self_initiated,
        crisis=CrisisFlags(
            use_of_force=optional_flag(fields, p, "use_of_force"),
            cit_requested=optional_flag(fields, p, "cit_requested"),
            cit_dispatched=optional_flag(fields, p, "cit_dispatched"),
            cit_arrived=optional_flag(fields, p, "cit_arrived"),
        ) if p.crisis_template else None,
        disposition_rows=p.disposition_rows,
        custom=tuple((name, v[:200]) for name, column in sorted(p.custom.items())
                     if (v := text(fields, column)) is not None),
        remarks=text(fields, col("remarks")),
    )


Parse = CadRow | FastRow | Rejection | Exclusion | FieldError | object  # object: fast.REFERENCE


class CadMapper:
    """The :class:`connectors.core.records.Mapper` for CSV / JSON rows of one profile.
    ``record.fields`` is a column → value mapping.

    Every readable row has a revision key ``<agency>:<cad number>``: its updated-at when
    the source gives one, else the content hash of its mapped fields. The runner claims
    the first revision it sees per key; a later, different revision adds a
    ``CallRevised`` (revision = updated-at or content hash), an identical one adds
    nothing (all its events are duplicates). A content revision is dated by the record's
    ``observed_at`` (the dropped file's modification time) when known, else by the
    latest time the row carries. Known limit: a row that reverts to exactly its first
    content is not a new fact (the first revision is what the hub compares against).

    Two paths give the same results: the fast path (:mod:`connectors.cad.fast`, the
    default) and, with ``reference=True``, the reference path (:func:`read_row`,
    :class:`CadRow`, :func:`connectors.cad.calls.map_call`: the pydantic models) — which the
    fast path also hands any record it does not reproduce by itself. ``clock`` (fast path)
    gives the envelopes' ``recordedat``.
    """

    #: Rows parsed by :meth:`revision_key` kept for the :meth:`map` of the same record
    #: (the runner asks for every key of a batch, then maps it); bounded, oldest dropped.
    PARSED_MAX = 4096

    def __init__(
        self,
        profile: Profile,
        source: str | None = None,
        keyring: Keyring | None = None,
        *,
        reference: bool = False,
        clock: Callable[[], datetime] | None = None,
        _parsed: dict[int, tuple[RawRecord, Parse]] | None = None,
        _fast: FastRows | None = None,
    ) -> None:
        self.profile = profile
        self.source = source or profile.source
        #: seals free text (remarks, clearance text) per incident; None: it is dropped
        self.keyring = keyring
        #: the compiled profile of the fast path (None: the reference path)
        self.fast: FastRows | None = None if reference else (_fast or FastRows(profile, self.source, clock))
        # id(record) -> (record, its parse); the record is held, so its id is not reused
        self._parsed: dict[int, tuple[RawRecord, Parse]] = {} if _parsed is None else _parsed

    def persons_to_seal(self, record: RawRecord) -> list[str]:
        """The incident subject whose key :meth:`map` seals this row's free text with (none
        without a keyring, free text, or a readable row). Pure; keeps the row's parse."""
        if self.keyring is None or not isinstance(record.fields, dict):
            return []
        hit = self._parsed.get(id(record))
        if hit is not None and hit[0] is record:
            row = hit[1]
        elif self.fast is not None:
            row = self.fast.parse(record.fields)
        else:
            row = REFERENCE
        if row is REFERENCE or isinstance(row, Exclusion):  # the reference reads excluded rows too
            try:
                row = read_row(record.fields, self.profile)
            except FieldError:
                return []
        if isinstance(row, FastRow):
            assert self.fast is not None
            seals = self.fast.seals(row)
        elif isinstance(row, CadRow):
            free_label = row.disposition_text and clear_label(row.disposition_text, self.profile) is None
            seals = bool(row.remarks or free_label)
        else:
            return []
        return [incident_subject(f"{self.profile.agency}:{row.cad_number}")] if seals else []

    def person_of(self, record: RawRecord) -> str | None:
        """The incident subject of a row whose CAD number is readable (with a keyring): its
        dead letter is sealed with the incident's key, erased with a linked person."""
        if self.keyring is None or not isinstance(record.fields, dict):
            return None
        cad = text(record.fields, self.profile.fields.get("cad_number"))
        return None if cad is None else incident_subject(f"{self.profile.agency}:{cad}")

    def with_keyring(self, keyring: Keyring) -> CadMapper:
        """The same mapper (sharing its parses) sealing with ``keyring`` (a batch's keys)."""
        return CadMapper(self.profile, self.source, keyring, reference=self.fast is None,
                         _parsed=self._parsed, _fast=self.fast)

    def _parse(self, record: RawRecord) -> Parse:
        """The record's parse — the fast path's (a :class:`FastRow`, the source's
        :class:`Exclusion`, or ``REFERENCE``), else ``read_row``'s (a :class:`FieldError`
        returned, not raised) — taken from :meth:`revision_key`'s parse of the same record
        object when there was one (each record is parsed and content-hashed once per
        ingest)."""
        hit = self._parsed.pop(id(record), None)
        if hit is not None and hit[0] is record:
            return hit[1]
        if self.fast is not None:
            return self.fast.parse(record.fields)
        try:
            return read_row(record.fields, self.profile)
        except FieldError as exc:
            return exc

    def _keep(self, record: RawRecord, row: Parse) -> None:
        if len(self._parsed) >= self.PARSED_MAX:
            del self._parsed[next(iter(self._parsed))]
        self._parsed[id(record)] = (record, row)

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        if not isinstance(record.fields, dict):
            return None
        if self.fast is not None:
            row = self._parse(record)
            if row is not REFERENCE:
                self._keep(record, row)
                return self.fast.revision_key(row) if isinstance(row, FastRow) else None
        if exclusion_reason(record.fields, self.profile):
            return None
        row = read_row_or_error(record.fields, self.profile) if self.fast is not None else self._parse(record)
        self._keep(record, row)
        if isinstance(row, FieldError | Rejection):
            return None
        assert isinstance(row, CadRow)
        return RevisionKey(f"{self.profile.agency}:{row.cad_number}", row.revision)

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        if not isinstance(record.fields, dict):
            return Rejection("parse", "row is not a column mapping")
        if self.fast is not None:
            row = self._parse(record)
            if isinstance(row, FastRow):
                mapped = self.fast.events(row, first_revision, record.observed_at, self.keyring)
                if mapped is not REFERENCE:
                    assert isinstance(mapped, Mapped)
                    return mapped
                row = REFERENCE
            if row is not REFERENCE:
                return _unmapped(row)
        return self._reference_map(record, first_revision)

    def _reference_map(self, record: RawRecord, first_revision: str | None) -> MapResult:
        """The reference path (the row read again when the fast path handed it over)."""
        excluded = exclusion_reason(record.fields, self.profile)
        if excluded:
            return Exclusion(excluded)
        row = read_row_or_error(record.fields, self.profile) if self.fast is not None else self._parse(record)
        if not isinstance(row, CadRow):
            return _unmapped(row)
        return map_call(
            row.call(self.profile, record.observed_at),
            self.profile,
            source=self.source,
            first_revision=first_revision,
            keyring=self.keyring,
        )


def read_row_or_error(fields: dict[str, Any], profile: Profile) -> CadRow | Rejection | FieldError:
    """:func:`read_row` with a :class:`FieldError` returned, not raised."""
    try:
        return read_row(fields, profile)
    except FieldError as exc:
        return exc


def _unmapped(row: Parse) -> MapResult:
    """The result of a row that gives no facts: its rejection or exclusion."""
    if isinstance(row, FieldError):
        return Rejection("parse", str(row))
    assert isinstance(row, Rejection | Exclusion)
    return row
