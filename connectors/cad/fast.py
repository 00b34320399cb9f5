"""The fast path of the CAD row mapping (what :class:`connectors.cad.mapping.CadMapper` runs
unless built with ``reference=True``): the facts of the reference path —
:func:`connectors.cad.mapping.read_row` → :meth:`~connectors.cad.mapping.CadRow.call` →
:func:`connectors.cad.calls.map_call`, pydantic models throughout — built from plain
values: a profile compiled once (:class:`FastRows`: columns, exclusion words, time
parsers), ``strptime`` formats matched with the very regexes :mod:`_strptime` compiles, the
agency's UTC offset cached per local hour, codes normalized and dispositions interpreted
once per distinct value, the content hash written as the exact text ``json.dumps`` gives,
and each envelope's bytes encoded once (:func:`schemas.envelope.trusted_event`).

Invariant: for every row the result equals the reference path's — revision keys, event ids,
``data``, :meth:`~schemas.envelope.Envelope.to_bytes`, unknown-disposition flags,
rejection and exclusion reasons (``tests/unit/connectors/cad/test_fast.py`` proves it over
generated rows of every bundled profile, damaged ones included). Free text is sealed by the
same function (:func:`connectors.cad.calls.seal_incident_text`, the kernel's per-incident
AES-GCM with deterministic nonces). Whatever this path does not reproduce by itself — an
exception other than a :class:`~connectors.cad.rowvalues.FieldError`, an incident id the
schema refuses — is answered :data:`REFERENCE`: the mapper then maps that record with the
reference path, so the outcome (a dead letter's reason included) is the reference's.
"""

from __future__ import annotations

import _strptime  # type: ignore[import-not-found]  # the regexes datetime.strptime matches with (same module, same locale)
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii  # what json.dumps(ensure_ascii=True) uses
from typing import Any, Final
from zoneinfo import ZoneInfo

from connectors.cad.calls import INITIAL_REVISION, clear_label, seal_incident_text
from connectors.cad.profile import Profile, normalize_code
from connectors.cad.rowvalues import CONTENT_REVISION_PREFIX, NO, YES, FieldError
from connectors.core.records import Exclusion, Mapped, Rejection, RevisionKey
from hub.kernel.crypto import Keyring
from schemas.base import Sealed
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    CrisisTemplate,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitOnScene,
)
from schemas.envelope import Envelope, trusted_event


class _Reference:
    """The marker of a record the fast path hands to the reference path."""

    def __repr__(self) -> str:
        return "REFERENCE"


REFERENCE: Final = _Reference()

#: an incident id the schema accepts (``IncidentId``: the pattern, 3 to 128 characters);
#: anything else is left to the reference path, whose validation error is the rejection
_INCIDENT_ID = re.compile(r"[A-Za-z0-9_.-]+:[^\n]+")
#: bound of the per-mapper caches of distinct values (codes, dispositions, local hours)
CACHE_MAX = 8192

Parser = Callable[[str], datetime | None]


# --------------------------------------------------------------------------- times


def _iso_parser(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value else value)
    except ValueError:
        return None


_TIME_RE = _strptime.TimeRE()
_FAST_DIRECTIVES = frozenset("YmdHIMSp")
_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)


def time_parser(fmt: str) -> Parser:
    """``value`` parsed with one profile time format (``iso`` = ISO 8601), or None when it
    is not in that format — what ``datetime.strptime`` / ``datetime.fromisoformat`` give
    (a ``ValueError`` is None). Formats of ``%Y %m %d`` with ``%H`` or ``%I``/``%p``, ``%M``,
    ``%S`` and literals match with the regex ``strptime`` compiles for them, converted as
    ``_strptime`` does; any other format calls ``strptime`` itself."""
    if fmt == "iso":
        return _iso_parser
    names = _DIRECTIVE.findall(fmt)
    used = set(names)
    if (
        not used <= _FAST_DIRECTIVES
        or not {"Y", "m", "d"} <= used
        or len(names) != len(used)
        or {"H", "I"} <= used
    ):
        def slow(value: str) -> datetime | None:
            try:
                return datetime.strptime(value, fmt)
            except ValueError:
                return None
        return slow
    regex = re.compile(_TIME_RE.pattern(fmt), re.IGNORECASE)
    am, pm = _TIME_RE.locale_time.am_pm
    has_h, has_i, has_p = "H" in used, "I" in used, "p" in used
    has_m, has_s = "M" in used, "S" in used

    def fast(value: str) -> datetime | None:
        found = regex.match(value)
        if found is None or found.end() != len(value):
            return None
        g = found.groupdict()
        hour = 0
        if has_h:
            hour = int(g["H"])
        elif has_i:  # _strptime: no %p reads as AM; 12 AM is hour 0, 12 PM stays 12
            hour = int(g["I"])
            ampm = g["p"].lower() if has_p else ""
            if ampm in ("", am):
                if hour == 12:
                    hour = 0
            elif ampm == pm and hour != 12:
                hour += 12
        try:
            return datetime(int(g["Y"]), int(g["m"]), int(g["d"]), hour,
                            int(g["M"]) if has_m else 0, int(g["S"]) if has_s else 0)
        except ValueError:
            return None

    return fast


_HOUR = timedelta(hours=1)
_LAST = timedelta(hours=1, microseconds=-1)


class LocalTime:
    """Naive agency-local times to aware UTC, exactly ``naive.replace(tzinfo=zone)
    .astimezone(UTC)``, with the zone's offset cached per local hour. An hour whose offset
    is not one value (a DST transition inside it, a gap or a repeated hour: fold 0 and fold
    1 differ) is never cached: its times go through the zone every time."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._offsets: dict[tuple[int, int, int, int], timedelta | None] = {}

    def _offset(self, naive: datetime) -> timedelta | None:
        start = naive.replace(minute=0, second=0, microsecond=0)
        seen = {
            (at + delta).replace(tzinfo=self.zone, fold=fold).utcoffset()
            for at, delta in ((start, timedelta(0)), (start, _LAST))
            for fold in (0, 1)
        }
        return seen.pop() if len(seen) == 1 else None

    def to_utc(self, naive: datetime) -> datetime:
        key = (naive.year, naive.month, naive.day, naive.hour)
        try:
            offset = self._offsets[key]
        except KeyError:
            if len(self._offsets) >= CACHE_MAX:
                self._offsets.clear()
            offset = self._offsets[key] = self._offset(naive)
        if offset is None:
            return naive.replace(tzinfo=self.zone).astimezone(UTC)
        return (naive - offset).replace(tzinfo=UTC)


def _z(iso: str) -> str:
    """The JSON form pydantic gives an aware UTC datetime, from its ``isoformat()``."""
    return iso[:-6] + "Z"


# --------------------------------------------------------------------------- the content hash


def _json_str(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _json_float(value: float | None) -> str:
    """``json.dumps`` of a float (``NaN`` / ``Infinity`` as the json module writes them)."""
    if value is None:
        return "null"
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_flag(value: bool | None) -> str:
    return "null" if value is None else "true" if value else "false"


# --------------------------------------------------------------------------- rows


class FastRow:
    """One readable row (what :class:`~connectors.cad.mapping.CadRow` holds, times as UTC
    datetimes with their ISO text, codes as read)."""

    __slots__ = (
        "area",
        "cad_number",
        "call_type_final",
        "call_type_initial",
        "closed",
        "code",
        "crisis",
        "custom",
        "dispatched",
        "enroute",
        "label",
        "latitude",
        "longitude",
        "onscene",
        "priority",
        "received",
        "remarks",
        "revision",
        "self_initiated",
        "updated",
    )

    cad_number: str
    #: each time: (aware UTC datetime, its isoformat()) or None
    received: tuple[datetime, str]
    dispatched: tuple[datetime, str] | None
    enroute: tuple[datetime, str] | None
    onscene: tuple[datetime, str] | None
    closed: tuple[datetime, str] | None
    updated: tuple[datetime, str] | None
    call_type_initial: str | None
    call_type_final: str | None
    priority: str | None
    code: str | None
    label: str | None
    area: tuple[str | None, str | None, str | None, str | None]  # precinct, district, sector, beat
    longitude: float | None
    latitude: float | None
    self_initiated: bool
    crisis: tuple[bool | None, bool | None, bool | None, bool | None] | None
    #: county-defined fields (field, the column's text), sorted by field
    custom: tuple[tuple[str, str], ...]
    remarks: str | None
    revision: str


def _area(a: tuple[str | None, str | None, str | None, str | None]) -> dict[str, str | None]:
    return {"precinct": a[0], "district": a[1], "sector": a[2], "beat": a[3]}


def _sealed(value: Sealed | None) -> dict[str, Any] | None:
    return None if value is None else value.model_dump(mode="json")


_UNIT_TYPES = (
    UnitDispatched.event_type, UnitEnRoute.event_type, UnitOnScene.event_type, UnitCleared.event_type,
)
_RECEIVED, _CRISIS = CallReceived.event_type, CrisisTemplate.event_type
_DISPOSITION, _REVISED = CallDisposition.event_type, CallRevised.event_type


class FastRows:
    """One profile compiled for the fast path: reads rows (:meth:`parse`) and builds their
    facts (:meth:`events`). Pure apart from its caches of distinct values (codes,
    dispositions, local hours: bounded, they never change a result)."""

    def __init__(self, profile: Profile, source: str, clock: Callable[[], datetime] | None = None) -> None:
        self.profile = profile
        self.source = source
        #: the envelopes' ``recordedat`` (read once per record)
        self.clock = clock or (lambda: datetime.now(UTC))
        col = profile.fields.get
        self.cols = {name: col(name) for name in (
            "cad_number", "received_at", "dispatched_at", "enroute_at", "onscene_at", "closed_at",
            "updated_at", "call_type_initial", "call_type_final", "priority", "disposition_code",
            "disposition_text", "precinct", "district", "sector", "beat", "longitude", "latitude",
            "use_of_force", "cit_requested", "cit_dispatched", "cit_arrived", "remarks",
        )}
        self.custom_columns = tuple(sorted(profile.custom.items()))
        self.blank_cad = Rejection("validate", f"{col('cad_number')}: CAD number is blank")
        self.blank_received = Rejection("validate", f"{col('received_at')}: received time is blank")
        self.exclude = [
            (rule.field, frozenset(normalize_code(v) for v in rule.values)) for rule in profile.exclude
        ]
        self.self_initiated = (
            None if profile.self_initiated is None
            else (profile.self_initiated.field,
                  frozenset(normalize_code(v) for v in profile.self_initiated.values))
        )
        self.parsers = [time_parser(f) for f in profile.time_formats]
        self.time_expected = " or ".join(profile.time_formats)
        self.local = LocalTime(profile.zone)
        self.vocabulary = profile.vocab.name if profile.vocab is not None else None
        self.decimals = profile.coordinate_decimals
        self._codes: dict[str, str] = {}
        self._meanings: dict[tuple[str | None, str | None], tuple[str | None, bool]] = {}

    # ------------------------------------------------------------------ reading

    def norm(self, value: str) -> str:
        """:func:`normalize_code`, once per distinct value."""
        try:
            return self._codes[value]
        except KeyError:
            if len(self._codes) >= CACHE_MAX:
                self._codes.clear()
            code = self._codes[value] = normalize_code(value)
            return code

    def meaning(self, code: str | None, label: str | None) -> tuple[str | None, bool]:
        """(the disposition text kept clear, whether the vocabulary does not know the
        disposition) — :func:`clear_label` and :func:`~connectors.cad.calls.map_call`'s
        flag, once per distinct (code, text)."""
        key = (code, label)
        try:
            return self._meanings[key]
        except KeyError:
            profile, vocab = self.profile, self.profile.vocab
            meaning = vocab.outcome(code, label) if vocab is not None else None
            if len(self._meanings) >= CACHE_MAX:
                self._meanings.clear()
            result = self._meanings[key] = (
                clear_label(label, profile), meaning is not None and not meaning[1]
            )
            return result

    def exclusion(self, fields: dict[str, Any]) -> Exclusion | None:
        """:func:`~connectors.cad.mapping.exclusion_reason` as an :class:`Exclusion`."""
        for column, words in self.exclude:
            value = _text(fields.get(column))
            if value is not None and (word := self.norm(value)) in words:
                return Exclusion(f"{column} marks the row {word}")
        return None

    def _time(self, fields: dict[str, Any], name: str) -> tuple[datetime, str] | None:
        column = self.cols[name]
        if not column:
            return None
        value = _text(fields.get(column))
        if value is None:
            return None
        for parse in self.parsers:
            parsed = parse(value)
            if parsed is not None:
                break
        else:
            raise FieldError(f"{column}: unparseable time (expected {self.time_expected})")
        utc = self.local.to_utc(parsed) if parsed.tzinfo is None else parsed.astimezone(UTC)
        return utc, utc.isoformat()

    def _float(self, fields: dict[str, Any], name: str) -> float | None:
        column = self.cols[name]
        value = _text(fields.get(column)) if column else None
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise FieldError(f"{column}: not a number") from None

    def _flag(self, fields: dict[str, Any], name: str) -> bool | None:
        column = self.cols[name]
        value = _text(fields.get(column)) if column else None
        if value is None:
            return None
        word = self.norm(value)
        return True if word in YES else False if word in NO else None

    def _str(self, fields: dict[str, Any], name: str) -> str | None:
        column = self.cols[name]
        return _text(fields.get(column)) if column else None

    def parse(self, fields: dict[str, Any]) -> FastRow | Exclusion | Rejection | FieldError | _Reference:
        """The row read as :func:`~connectors.cad.mapping.read_row` reads it (same checks in
        the same order, so the same first error), or the source's exclusion; never raises
        (a :class:`FieldError` is returned; anything else is :data:`REFERENCE`)."""
        try:
            return self._parse(fields)
        except FieldError as exc:
            return exc
        except Exception:  # not reproduced here: the reference path answers it
            return REFERENCE

    def _parse(self, fields: dict[str, Any]) -> FastRow | Exclusion | Rejection:
        excluded = self.exclusion(fields)
        if excluded is not None:
            return excluded
        cad = self._str(fields, "cad_number")
        if cad is None:
            return self.blank_cad
        received = self._time(fields, "received_at")
        if received is None:
            return self.blank_received
        row = FastRow()
        row.cad_number = cad
        row.received = received
        self_initiated = False
        if self.self_initiated is not None:
            column, words = self.self_initiated
            flag = _text(fields.get(column))
            self_initiated = flag is not None and self.norm(flag) in words
        row.self_initiated = self_initiated
        t = self._time
        row.dispatched, row.enroute = t(fields, "dispatched_at"), t(fields, "enroute_at")
        row.onscene, row.closed = t(fields, "onscene_at"), t(fields, "closed_at")
        row.updated = t(fields, "updated_at")
        s = self._str
        row.call_type_initial = s(fields, "call_type_initial")
        row.call_type_final = s(fields, "call_type_final")
        row.priority = s(fields, "priority")
        row.code, row.label = s(fields, "disposition_code"), s(fields, "disposition_text")
        row.area = (s(fields, "precinct"), s(fields, "district"), s(fields, "sector"), s(fields, "beat"))
        row.longitude, row.latitude = self._float(fields, "longitude"), self._float(fields, "latitude")
        row.crisis = (
            (self._flag(fields, "use_of_force"), self._flag(fields, "cit_requested"),
             self._flag(fields, "cit_dispatched"), self._flag(fields, "cit_arrived"))
            if self.profile.crisis_template else None
        )
        row.custom = tuple((name, v[:200]) for name, column in self.custom_columns
                           if (v := _text(fields.get(column))) is not None)
        row.remarks = s(fields, "remarks")
        row.revision = row.updated[1] if row.updated is not None else self.content_hash(row)
        return row

    def content_hash(self, row: FastRow) -> str:
        """:meth:`~connectors.cad.mapping.CadRow.content_hash`: the text ``json.dumps(content,
        sort_keys=True)`` gives, written directly."""
        def c(value: str | None) -> str:
            return encode_basestring_ascii(self.norm(value)) if value else "null"

        def t(value: tuple[datetime, str] | None) -> str:
            return "null" if value is None else encode_basestring_ascii(value[1])

        per_row = self.profile.disposition_rows
        a = row.area
        crisis = ""
        if row.crisis is not None:
            crisis = '"crisis": [' + ", ".join(_json_flag(f) for f in row.crisis) + "], "
        if row.custom:  # as the reference: only then, so rows without custom fields keep their hash
            crisis += '"custom": [' + ", ".join(
                f"[{encode_basestring_ascii(k)}, {c(v)}]" for k, v in row.custom) + "], "
        text = (
            f'{{"area": {{"beat": {c(a[3])}, "district": {c(a[1])}, "precinct": {c(a[0])}, '
            f'"sector": {c(a[2])}}}, "call_type_final": {c(row.call_type_final)}, '
            f'"call_type_initial": {c(row.call_type_initial)}, "closed": {t(row.closed)}, {crisis}'
            f'"dispatched": {t(row.dispatched)}, '
            f'"disposition_code": {"null" if per_row else c(row.code)}, '
            f'"disposition_text": {"null" if per_row else c(row.label)}, '
            f'"enroute": {t(row.enroute)}, "latitude": {_json_float(row.latitude)}, '
            f'"longitude": {_json_float(row.longitude)}, "onscene": {t(row.onscene)}, '
            f'"priority": {c(row.priority)}, "received": {t(row.received)}, '
            f'"self_initiated": {_json_flag(row.self_initiated)}}}'
        )
        return CONTENT_REVISION_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]

    def revision_key(self, row: FastRow) -> RevisionKey:
        return RevisionKey(f"{self.profile.agency}:{row.cad_number}", row.revision)

    def seals(self, row: FastRow) -> bool:
        """Whether the row has free text to seal (remarks, a disposition text the
        vocabulary does not know)."""
        return bool(row.remarks) or bool(row.label and self.meaning(row.code, row.label)[0] is None)

    # ------------------------------------------------------------------ facts

    def events(
        self,
        row: FastRow,
        first_revision: str | None,
        observed_at: datetime | None,
        keyring: Keyring | None,
    ) -> Mapped | _Reference:
        """The row's facts as :func:`~connectors.cad.calls.map_call` builds them (see
        :mod:`connectors.cad.calls`), or :data:`REFERENCE` for an incident id the schema
        refuses."""
        profile, source = self.profile, self.source
        incident = f"{profile.agency}:{row.cad_number}"
        if not (3 <= len(incident) <= 128 and _INCIDENT_ID.fullmatch(incident)):
            return REFERENCE
        now = self.clock()
        code, label = row.code, row.label
        clear, unknown = self.meaning(code, label)
        received_at, received_iso = row.received
        received_z = _z(received_iso)
        decimals = self.decimals
        lon, lat = row.longitude, row.latitude
        if decimals is not None:
            lon = None if lon is None else round(lon, decimals)
            lat = None if lat is None else round(lat, decimals)

        def event(event_type: str, data: dict[str, Any], at: datetime,
                  record_id: str = incident, revision: str = INITIAL_REVISION) -> Envelope:
            return trusted_event(event_type, data, source=source, record_id=record_id, revision=revision,
                                 key=incident, time=at, recorded_at=now)

        def sealed_label(record_id: str, revision: str) -> dict[str, Any] | None:
            if clear is not None:
                return None
            return _sealed(seal_incident_text(keyring, incident, "disposition_text", label, source=source,
                                              record_id=record_id, revision=revision))

        events = [event(_RECEIVED, {
            "incident_id": incident,
            "agency": profile.agency,
            "cad_number": row.cad_number,
            "at": received_z,
            "source_timezone": profile.timezone,
            "vocabulary": self.vocabulary,
            "call_type_initial": row.call_type_initial,
            "call_type_final": row.call_type_final,
            "priority": row.priority,
            "self_initiated": row.self_initiated,
            "area": _area(row.area),
            "longitude": lon,
            "latitude": lat,
            "remarks": _sealed(seal_incident_text(keyring, incident, "remarks", row.remarks, source=source)),
            "custom": dict(row.custom),
        }, received_at)]
        units = (row.dispatched, row.enroute, row.onscene, row.closed)
        for event_type, unit in zip(_UNIT_TYPES, units, strict=True):
            if unit is not None:
                events.append(event(event_type, {
                    "incident_id": incident, "unit_id": None, "unit_kind": "police", "at": _z(unit[1]),
                }, unit[0]))
        if row.crisis is not None:
            f = row.crisis
            events.append(event(_CRISIS, {
                "incident_id": incident, "at": received_z, "template_id": row.cad_number,
                "use_of_force": f[0], "cit_requested": f[1], "cit_dispatched": f[2], "cit_arrived": f[3],
            }, received_at))
        per_row = profile.disposition_rows
        if code is not None or label is not None:
            record = f"{incident}/{self.norm(code or label or '')}" if per_row else incident
            when = row.closed or row.onscene or row.received
            events.append(event(_DISPOSITION, {
                "incident_id": incident, "at": _z(when[1]), "disposition_code": code,
                "disposition_text": clear, "disposition_note": sealed_label(record, INITIAL_REVISION),
            }, when[0], record))
        revision = row.revision
        if first_revision is not None and revision != first_revision:
            revised = self._revised_at(row, observed_at)
            z = {name: None if value is None else _z(value[1]) for name, value in
                 (("d", row.dispatched), ("e", row.enroute), ("o", row.onscene), ("c", row.closed))}
            events.append(event(_REVISED, {
                "incident_id": incident,
                "at": _z(revised.isoformat()),
                "revision": revision,
                "received_at": received_z,
                "call_type_initial": row.call_type_initial,
                "call_type_final": row.call_type_final,
                "priority": row.priority,
                "area": _area(row.area),
                "disposition_code": None if per_row else code,
                "disposition_text": None if per_row else clear,
                "disposition_note": None if per_row else sealed_label(incident, revision),
                "dispatched_at": z["d"],
                "enroute_at": z["e"],
                "onscene_at": z["o"],
                "cleared_at": z["c"],
                "custom": dict(row.custom),
            }, revised, incident, revision))
        return Mapped(tuple(events), unknown_disposition=unknown)

    @staticmethod
    def _revised_at(row: FastRow, observed_at: datetime | None) -> datetime:
        """:meth:`~connectors.cad.mapping.CadRow.revised_at`."""
        if row.updated is not None:
            return row.updated[0]
        latest = max(t[0] for t in (row.received, row.dispatched, row.enroute, row.onscene, row.closed)
                     if t is not None)
        return latest if observed_at is None else max(observed_at.astimezone(UTC), latest)


def _text(value: Any) -> str | None:
    """:func:`~connectors.cad.mapping.text` of a value already looked up."""
    if value is None:
        return None
    value = (value if type(value) is str else str(value)).strip()
    return value or None
