"""Pure mapping of one CAD row (a CSV row or an open-data JSON row) into dispatch facts.

One row → ``CallReceived`` (+ ``UnitDispatched`` / ``UnitEnRoute`` / ``UnitOnScene`` for
each time the row carries, + ``CallDisposition`` when it has a disposition). Rows the
source marks duplicate / void / test → :class:`Exclusion`. Unparseable times or numbers,
a missing CAD number or received time, a wrong column count → :class:`Rejection`.
A disposition the profile does not know → outcome ``unknown`` (flagged for the metric).

Revisions: open-data feeds republish a row under the same CAD number with a newer
updated-at. The facts of a row's first revision use revision ``"0"`` in their ids (so
they exist once per call whatever revision was seen first); a later revision adds one
``CallRevised`` whose id carries that revision.

Times: naive source times are agency-local (``profile.timezone``), stored as UTC; the
zone is recorded in ``CallReceived.source_timezone``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.cad.profile import Profile, normalize_code
from connectors.core.records import Exclusion, Mapped, MapResult, RawRecord, Rejection, RevisionKey
from schemas.base import Area
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


class FieldError(ValueError):
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


def revision_of(fields: dict[str, Any], profile: Profile) -> str:
    """The row's revision: its updated-at as UTC ISO 8601, or ``"0"`` without one."""
    updated = optional_time(fields, profile, "updated_at")
    return INITIAL_REVISION if updated is None else updated.isoformat()


class CadMapper:
    """The :class:`connectors.core.records.Mapper` for CSV / JSON rows of one profile.
    ``record.fields`` is a column → value mapping."""

    def __init__(self, profile: Profile, source: str | None = None) -> None:
        self.profile = profile
        self.source = source or profile.source

    def revision_key(self, record: RawRecord) -> RevisionKey | None:
        if "updated_at" not in self.profile.fields or not isinstance(record.fields, dict):
            return None
        cad = text(record.fields, self.profile.fields.get("cad_number"))
        if cad is None:
            return None
        try:
            return RevisionKey(f"{self.profile.agency}:{cad}", revision_of(record.fields, self.profile))
        except FieldError:
            return None

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult:
        if not isinstance(record.fields, dict):
            return Rejection("parse", "row is not a column mapping")
        try:
            return self._map(record.fields, first_revision)
        except FieldError as exc:
            return Rejection("parse", str(exc))

    def _map(self, f: dict[str, Any], first_revision: str | None) -> MapResult:
        p = self.profile
        col = p.fields.get
        excluded = exclusion_reason(f, p)
        if excluded:
            return Exclusion(excluded)
        cad = text(f, col("cad_number"))
        if cad is None:
            return Rejection("validate", f"{col('cad_number')}: CAD number is blank")
        received = optional_time(f, p, "received_at")
        if received is None:
            return Rejection("validate", f"{col('received_at')}: received time is blank")
        dispatched = optional_time(f, p, "dispatched_at")
        enroute = optional_time(f, p, "enroute_at")
        onscene = optional_time(f, p, "onscene_at")
        closed = optional_time(f, p, "closed_at")
        longitude = optional_float(f, p, "longitude")
        latitude = optional_float(f, p, "latitude")
        revision = revision_of(f, p)

        initial, final = text(f, col("call_type_initial")), text(f, col("call_type_final"))
        bh = is_behavioral_health(initial, final, p)
        category = categorize(initial, final, bh, p)
        area = Area(
            precinct=text(f, col("precinct")),
            district=text(f, col("district")),
            sector=text(f, col("sector")),
            beat=text(f, col("beat")),
        )
        self_initiated = False
        if p.self_initiated is not None:
            flag = text(f, p.self_initiated.field)
            self_initiated = flag is not None and normalize_code(flag) in {
                normalize_code(v) for v in p.self_initiated.values
            }
        incident_id = f"{p.agency}:{cad}"
        code, label = text(f, col("disposition_code")), text(f, col("disposition_text"))
        disposition = map_disposition(code, label, p)

        def event(data: Any, revision_: str = INITIAL_REVISION) -> Envelope:
            return new_event(data, source=self.source, record_id=incident_id, revision=revision_)

        events: list[Envelope] = [
            event(
                CallReceived(
                    incident_id=incident_id,
                    agency=p.agency,
                    cad_number=cad,
                    at=received,
                    source_timezone=p.timezone,
                    call_type_initial=initial,
                    call_type_final=final,
                    priority=text(f, col("priority")),
                    category=category,  # type: ignore[arg-type]
                    behavioral_health=bh,
                    self_initiated=self_initiated,
                    area=area,
                    longitude=longitude,
                    latitude=latitude,
                )
            )
        ]
        for cls, at in ((UnitDispatched, dispatched), (UnitEnRoute, enroute), (UnitOnScene, onscene)):
            if at is not None:
                events.append(event(cls(incident_id=incident_id, at=at)))
        if disposition is not None:
            events.append(
                event(
                    CallDisposition(
                        incident_id=incident_id,
                        at=closed or onscene or received,
                        disposition_code=code,
                        disposition_text=label,
                        outcome=disposition[0],  # type: ignore[arg-type]
                    )
                )
            )
        if first_revision is not None and revision != first_revision:
            at = datetime.fromisoformat(revision) if revision != INITIAL_REVISION else received
            events.append(
                event(
                    CallRevised(
                        incident_id=incident_id,
                        at=at,
                        revision=revision,
                        call_type_final=final,
                        priority=text(f, col("priority")),
                        category=category,  # type: ignore[arg-type]
                        behavioral_health=bh,
                        area=area,
                        disposition_code=code,
                        disposition_text=label,
                        outcome=disposition[0] if disposition else None,  # type: ignore[arg-type]
                    ),
                    revision,
                )
            )
        return Mapped(tuple(events), unknown_disposition=disposition is not None and not disposition[1])
