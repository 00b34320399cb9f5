"""Pure mapping of one CAD row (a CSV row or an open-data JSON row) into dispatch facts.

One row → ``CallReceived`` (+ ``UnitDispatched`` / ``UnitEnRoute`` / ``UnitOnScene`` for
each time the row carries, + ``CallDisposition`` when it has a disposition). Rows the
source marks duplicate / void / test → :class:`Exclusion`. Unparseable times or numbers,
a missing CAD number or received time, a wrong column count → :class:`Rejection`.
A disposition the profile does not know → outcome ``unknown`` (flagged for the metric).

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
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from connectors.cad.profile import Profile, normalize_code
from connectors.core.records import Exclusion, Mapped, MapResult, RawRecord, Rejection, RevisionKey
from hub.kernel.crypto import KeyDestroyedError, Keyring, incident_subject, seal
from hub.kernel.errors import PermanentError
from schemas.base import Area, Sealed
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitDispatched,
    UnitEnRoute,
    UnitOnScene,
)
from schemas.envelope import Envelope, new_event

INITIAL_REVISION = "0"


class FieldError(PermanentError, ValueError):
    """A field's value cannot be read; the message names the column and the expected
    form, never the value itself."""


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


def optional_time(fields: dict[str, Any], profile: Profile, name: str) -> datetime | None:
    column = profile.fields.get(name)  # type: ignore[call-overload]
    value = text(fields, column)
    return None if value is None else parse_time(value, profile, column or name)


def optional_float(fields: dict[str, Any], profile: Profile, name: str) -> float | None:
    column = profile.fields.get(name)  # type: ignore[call-overload]
    value = text(fields, column)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise FieldError(f"{column}: not a number") from None


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
    keyring: Keyring | None, incident_id: str, field: str, value: str | None
) -> Sealed | None:
    """``value`` sealed with the incident's key; None without a value or a keyring (free
    text is never stored clear), or when the incident was erased with a linked person."""
    if not value or keyring is None:
        return None
    try:
        return seal(keyring, incident_subject(incident_id), {field: value})
    except KeyDestroyedError:
        return None


def matches_any(texts: list[str | None], keywords: list[str] | tuple[str, ...]) -> bool:
    low = [t.casefold() for t in texts if t]
    return any(k.casefold() in t for t in low for k in keywords)


def is_behavioral_health(initial: str | None, final: str | None, profile: Profile) -> bool:
    """The agency's rule (default: suicide, crisis, mental / behavioral / emotional,
    welfare check or overdose in the initial or final call-type text)."""
    return matches_any([initial, final], profile.behavioral_health.keywords)


def categorize(initial: str | None, final: str | None, behavioral_health: bool, profile: Profile) -> str:
    for candidate in (final, initial):
        if not candidate:
            continue
        for category, keywords in profile.category_rules():
            if matches_any([candidate], keywords):
                return category
    return "behavioral_health" if behavioral_health else "other"


def map_disposition(code: str | None, label: str | None, profile: Profile) -> tuple[str, bool] | None:
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


def exclusion_reason(fields: dict[str, Any], profile: Profile) -> str | None:
    for rule in profile.exclude:
        value = text(fields, rule.field)
        if value is not None and normalize_code(value) in {normalize_code(v) for v in rule.values}:
            return f"{rule.field} marks the row {normalize_code(value)}"
    return None


CONTENT_REVISION_PREFIX = "sha256:"


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
    remarks: str | None = None  # free text: sealed per incident, not part of the content hash

    def content_hash(self) -> str:
        """``sha256:`` + 16 hex digits over the mapped fields (times as UTC, texts
        normalized as codes so case or spacing changes in a re-export are not revisions;
        the CAD number and the updated-at are not content)."""
        def t(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def c(value: str | None) -> str | None:
            return normalize_code(value) if value else None

        content = {
            "received": t(self.received),
            "dispatched": t(self.dispatched),
            "enroute": t(self.enroute),
            "onscene": t(self.onscene),
            "closed": t(self.closed),
            "call_type_initial": c(self.call_type_initial),
            "call_type_final": c(self.call_type_final),
            "priority": c(self.priority),
            "disposition_code": c(self.disposition_code),
            "disposition_text": c(self.disposition_text),
            "area": {k: c(v) for k, v in self.area.model_dump().items()},
            "longitude": self.longitude,
            "latitude": self.latitude,
            "self_initiated": self.self_initiated,
        }
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
        longitude=blur(optional_float(fields, p, "longitude"), p.coordinate_decimals),
        latitude=blur(optional_float(fields, p, "latitude"), p.coordinate_decimals),
        self_initiated=self_initiated,
        remarks=text(fields, col("remarks")),
    )


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
        _parsed: dict[int, tuple[RawRecord, CadRow | Rejection | FieldError]] | None = None,
    ) -> None:
        self.profile = profile
        self.source = source or profile.source
        #: seals free text (remarks, clearance text) per incident; None: it is dropped
        self.keyring = keyring
        # id(record) -> (record, its parse); the record is held, so its id is not reused
        self._parsed: dict[int, tuple[RawRecord, CadRow | Rejection | FieldError]] = (
            {} if _parsed is None else _parsed
        )

    def persons_to_seal(self, record: RawRecord) -> list[str]:
        """The incident subject whose key :meth:`map` seals this row's free text with (none
        without a keyring, free text, or a readable row). Pure; keeps the row's parse."""
        if self.keyring is None or not isinstance(record.fields, dict):
            return []
        hit = self._parsed.get(id(record))
        if hit is not None and hit[0] is record:
            row = hit[1]
        else:
            try:
                row = read_row(record.fields, self.profile)
            except FieldError:
                return []
        if not isinstance(row, CadRow):
            return []
        free_label = row.disposition_text and clear_label(row.disposition_text, self.profile) is None
        if not row.remarks and not free_label:
            return []
        return [incident_subject(f"{self.profile.agency}:{row.cad_number}")]

    def person_of(self, record: RawRecord) -> str | None:
        """The incident subject of a row whose CAD number is readable (with a keyring): its
        dead letter is sealed with the incident's key, erased with a linked person."""
        if self.keyring is None or not isinstance(record.fields, dict):
            return None
        cad = text(record.fields, self.profile.fields.get("cad_number"))
        return None if cad is None else incident_subject(f"{self.profile.agency}:{cad}")

    def with_keyring(self, keyring: Keyring) -> CadMapper:
        """The same mapper (sharing its parses) sealing with ``keyring`` (a batch's keys)."""
        return CadMapper(self.profile, self.source, keyring, _parsed=self._parsed)

    def _parse(self, record: RawRecord) -> CadRow | Rejection | FieldError:
        """``read_row`` of the record's fields (a :class:`FieldError` returned, not raised),
        taken from :meth:`revision_key`'s parse of the same record object when there was
        one (each record is parsed and content-hashed once per ingest)."""
        hit = self._parsed.pop(id(record), None)
        if hit is not None and hit[0] is record:
            return hit[1]
        try:
            return read_row(record.fields, self.profile)
        except FieldError as exc:
            return exc

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        if not isinstance(record.fields, dict) or exclusion_reason(record.fields, self.profile):
            return None
        row = self._parse(record)
        if len(self._parsed) >= self.PARSED_MAX:
            del self._parsed[next(iter(self._parsed))]
        self._parsed[id(record)] = (record, row)
        if isinstance(row, FieldError | Rejection):
            return None
        return RevisionKey(f"{self.profile.agency}:{row.cad_number}", row.revision)

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        if not isinstance(record.fields, dict):
            return Rejection("parse", "row is not a column mapping")
        excluded = exclusion_reason(record.fields, self.profile)
        if excluded:
            return Exclusion(excluded)
        row = self._parse(record)
        if isinstance(row, FieldError):
            return Rejection("parse", str(row))
        if isinstance(row, Rejection):
            return row
        try:
            return self._map(row, first_revision, record.observed_at)
        except FieldError as exc:
            return Rejection("parse", str(exc))

    def _map(self, row: CadRow, first_revision: str | None, observed_at: datetime | None) -> MapResult:
        p = self.profile
        initial, final = row.call_type_initial, row.call_type_final
        bh = is_behavioral_health(initial, final, p)
        category = categorize(initial, final, bh, p)
        incident_id = f"{p.agency}:{row.cad_number}"
        code, label = row.disposition_code, row.disposition_text
        disposition = map_disposition(code, label, p)

        def event(data: Any, revision_: str = INITIAL_REVISION) -> Envelope:
            return new_event(data, source=self.source, record_id=incident_id, revision=revision_)

        events: list[Envelope] = [
            event(
                CallReceived(
                    incident_id=incident_id,
                    agency=p.agency,
                    cad_number=row.cad_number,
                    at=row.received,
                    source_timezone=p.timezone,
                    call_type_initial=initial,
                    call_type_final=final,
                    priority=row.priority,
                    category=category,  # type: ignore[arg-type]
                    behavioral_health=bh,
                    self_initiated=row.self_initiated,
                    area=row.area,
                    longitude=row.longitude,
                    latitude=row.latitude,
                    remarks=seal_incident_text(self.keyring, incident_id, "remarks", row.remarks),
                )
            )
        ]
        for cls, at in (
            (UnitDispatched, row.dispatched),
            (UnitEnRoute, row.enroute),
            (UnitOnScene, row.onscene),
        ):
            if at is not None:
                events.append(event(cls(incident_id=incident_id, at=at)))
        if disposition is not None:
            events.append(
                event(
                    CallDisposition(
                        incident_id=incident_id,
                        at=row.closed or row.onscene or row.received,
                        disposition_code=code,
                        disposition_text=clear_label(label, p),
                        disposition_note=(
                            None if clear_label(label, p) is not None
                            else seal_incident_text(self.keyring, incident_id, "disposition_text", label)
                        ),
                        outcome=disposition[0],  # type: ignore[arg-type]
                    )
                )
            )
        revision = row.revision
        if first_revision is not None and revision != first_revision:
            if row.updated is not None:
                at = row.updated
            else:
                observed = observed_at.astimezone(UTC) if observed_at else None
                at = max(observed, row.latest_time) if observed else row.latest_time
            events.append(
                event(
                    CallRevised(
                        incident_id=incident_id,
                        at=at,
                        revision=revision,
                        call_type_final=final,
                        priority=row.priority,
                        category=category,  # type: ignore[arg-type]
                        behavioral_health=bh,
                        area=row.area,
                        disposition_code=code,
                        disposition_text=clear_label(label, p),
                        outcome=disposition[0] if disposition else None,  # type: ignore[arg-type]
                    ),
                    revision,
                )
            )
        return Mapped(tuple(events), unknown_disposition=disposition is not None and not disposition[1])
