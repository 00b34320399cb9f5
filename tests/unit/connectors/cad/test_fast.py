"""The fast CAD mapping path equals the reference path (property tests).

Hypothesis generates rows of every bundled CSV profile layout (also with a remarks column,
with coordinates kept as published, and with county-defined columns): times in each of the
profile's formats, around the agency's DST transitions, with offsets, in odd spellings, and
damaged; codes, free text,
numbers and indicators as feeds write them and as they should not; SoQL-style JSON values
that are not strings; revisions (first revision none, the row's own, another content hash,
another updated-at); a keyring that seals free text and one whose incident key was erased.
For every row the fast path (:class:`CadMapper`) and the reference path
(``CadMapper(reference=True)``, the pydantic models) give the same revision key, persons
to seal, rejection / exclusion, unknown-disposition flag and envelopes — ids, ``data``,
and byte-identical :meth:`Envelope.to_bytes` — and every fast envelope validates on read.
Whole CSV batches through the runner give the same counts, events and dead letters.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.cad.csvfile import parse_csv
from connectors.cad.fast import LocalTime, time_parser
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import Profile, load_profile, profile_names
from connectors.core.memory import MemoryLog
from connectors.core.records import Mapped, RawRecord
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.crypto import Keyring, MemoryKeyring, incident_subject
from hub.kernel.deadletters import describe_error
from hub.kernel.keystore import DeadLetterSealer
from schemas.envelope import ID_NAMESPACE, Envelope, deterministic_id

CLOCK = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
SEAL = DeadLetterSealer(bytes(32))
OTHER_REVISIONS = ("sha256:0000000000000000", "1999-01-01T00:00:00+00:00")
ERASED_CAD = "666"  # the incident whose key the "erased" keyring destroyed
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


#: county-defined fields (field -> column) of the layouts that map some
COUNTY_COLUMNS = {"zone": "County Zone", "crisis_line": "crisis_line"}


@cache
def layouts() -> list[Profile]:
    """Every bundled CSV profile, with a remarks column, and with coordinates as published."""
    out: list[Profile] = []
    for name in profile_names():
        p = load_profile(name)
        if p.format != "csv":
            continue
        out.append(p)
        out.append(p.model_copy(update={"fields": p.fields | {"remarks": "remarks"},
                                        "columns": [*p.columns, "remarks"]}))
        out.append(p.model_copy(update={"coordinate_decimals": None}))
        out.append(p.model_copy(update={"custom": dict(COUNTY_COLUMNS),
                                        "columns": [*p.columns, *COUNTY_COLUMNS.values()]}))
    return out


def keyrings() -> dict[str, Keyring | None]:
    erased = MemoryKeyring()
    for p in layouts():
        erased.destroy(incident_subject(f"{p.agency}:{ERASED_CAD}"))
    return {"none": None, "keys": MemoryKeyring(), "erased": erased}


# --------------------------------------------------------------------------- strategies


@cache
def dst_days(zone_name: str) -> list[datetime]:
    """Local midnights of the days on which ``zone_name`` changes its offset (2019-2027)."""
    zone = ZoneInfo(zone_name)
    days = []
    day = datetime(2019, 1, 1)
    while day.year < 2028:
        a = day.replace(tzinfo=zone).utcoffset()
        b = (day + timedelta(hours=23, minutes=59)).replace(tzinfo=zone).utcoffset()
        if a != b:
            days.append(day)
        day += timedelta(days=1)
    return days


def naive_times(profile: Profile) -> st.SearchStrategy[datetime]:
    anywhere = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 12, 31))
    days = dst_days(profile.timezone)
    edges = st.builds(
        lambda d, h, m, s, us: d.replace(hour=h, minute=m, second=s, microsecond=us),
        st.sampled_from(days) if days else st.just(datetime(2024, 3, 10)),
        st.integers(0, 4), st.integers(0, 59), st.integers(0, 59), st.sampled_from([0, 0, 0, 250000]),
    )
    return st.one_of(anywhere, edges, edges)


def spell(dt: datetime, fmt: str, variant: int, hours: int) -> str:
    """``dt`` written in ``fmt`` the way feeds write it (and some ways they should not)."""
    if fmt == "iso":
        text = [dt.isoformat(), dt.isoformat(sep=" "), dt.replace(microsecond=0).isoformat(),
                dt.replace(tzinfo=timezone(timedelta(hours=hours))).isoformat(),
                dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")][variant % 5]
    else:
        text = dt.strftime(fmt)
        if variant % 5 == 1:
            text = text.lower()
        elif variant % 5 == 2:
            text = text.replace("/0", "/").lstrip("0")  # 3/7/2024 1:05:00 AM
        elif variant % 5 == 3:
            text = f"  {text} "
    return text


DAMAGED_TIMES = ["13/45/2023 99:00:00 XM", "02/30/2024 10:00:00 AM", "12/31/2024 12:00:61 PM",
                 "00/10/2024 10:00:00 AM", "2024-02-30T10:00:00", "31/31/2024 99:99",
                 "12/31/2024 13:00:00 PM",
                 "1/1/2024 0:00:00 AM", "12/31/9999 11:59:59 PM", "01/01/0001 12:00:00 AM", "yesterday"]


def times(profile: Profile) -> st.SearchStrategy[str]:
    good = st.builds(spell, naive_times(profile), st.sampled_from(profile.time_formats),
                     st.integers(0, 9), st.integers(-12, 14))
    return st.one_of(good, good, good, st.sampled_from(["", " ", *DAMAGED_TIMES]), st.text(max_size=12))


def codes(profile: Profile) -> st.SearchStrategy[str]:
    vocab = list(profile.vocab.dispositions)[:40] if profile.vocab else []
    words = [*vocab, "", " ", "ARREST", "arrest", "No Enforcement", "NOPE-UNKNOWN", "Some Text",
             "DUPLICATE", "void", "TEST INCIDENT", "PERSON IN CRISIS", "  welfare   check ", "Y", "N"]
    return st.one_of(st.sampled_from(words), st.text(max_size=16))


NUMBERS = ["", "-122.3", "47.61234567", "east", "nan", "-inf", "inf", "1e16", "1e-7", "1_000", " 47.6 ",
           "-0.0", "0", "123456789012345678"]


def cad_numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.from_regex(r"[0-9]{1,12}", fullmatch=True),
        st.sampled_from(["", " ", "a\nb", "x" * 130, "20-1:2", ERASED_CAD, "  77  "]),
        st.text(max_size=20),
    )


def field_values(profile: Profile, column: str, name: str | None) -> st.SearchStrategy[Any]:
    if name is not None and name.endswith("_at"):
        return times(profile)
    if name == "cad_number":
        return cad_numbers()
    if name in ("longitude", "latitude"):
        return st.one_of(st.sampled_from(NUMBERS), st.floats(allow_nan=False).map(repr))
    if name in ("use_of_force", "cit_requested", "cit_dispatched", "cit_arrived"):
        return st.sampled_from(["Y", "N", "yes", "NO", "-", "", "true", "0", "1", "maybe"])
    if name == "remarks":
        return st.one_of(st.just(""), st.text(max_size=30), st.just("RP says Jane Q is off her meds"))
    if column in COUNTY_COLUMNS.values():  # a county field: blank, words, too long (cut to 200)
        return st.one_of(st.sampled_from(["", " ", "North", "Y", "Zoné 5", "x" * 250]), st.text(max_size=16))
    words: list[str] = []
    if profile.self_initiated is not None and column == profile.self_initiated.field:
        words += [*profile.self_initiated.values, "onview", "911", "N"]
    for rule in profile.exclude:
        if column == rule.field:
            words += [*rule.values, rule.values[0].lower()]
    base = codes(profile)
    return st.one_of(st.sampled_from(words), base) if words else base


@st.composite
def rows(draw: st.DrawFn, profile: Profile) -> dict[str, Any]:
    """One row of ``profile``'s layout (plus its updated-at column when it has one)."""
    by_column = {column: name for name, column in profile.fields.items()}
    columns = list(dict.fromkeys([*profile.columns, *profile.fields.values(), *profile.custom.values()]))
    row: dict[str, Any] = {}
    for column in columns:
        if column == profile.fields.get("updated_at") and draw(st.booleans()):
            continue  # exports without the column, API rows with it
        row[column] = draw(field_values(profile, column, by_column.get(column)))
    if draw(st.integers(0, 4)) == 0:  # SoQL JSON: values that are not strings
        column = draw(st.sampled_from(columns))
        row[column] = draw(st.one_of(st.integers(-5, 10**9), st.booleans(), st.none(), st.floats()))
    return row


profiles = st.sampled_from(range(len(layouts()))).map(lambda i: layouts()[i])
observed = st.one_of(st.none(), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1),
                                             timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))])))


# --------------------------------------------------------------------------- comparing


def outcome(fn: Any) -> Any:
    """What a call gives: its value, or the exception it raised as the runner reports it."""
    try:
        return ("value", fn())
    except Exception as exc:
        return ("raised", type(exc), describe_error(exc))


def assert_same_envelope(fast: Envelope, ref: Envelope) -> None:
    pinned = ref.model_copy(update={"recordedat": fast.recordedat})  # the reference read its own clock
    assert fast.to_bytes() == pinned.to_bytes()
    assert fast.to_bytes() == fast.model_dump_json().encode()  # the kept bytes are its own fields'
    assert (fast.id, fast.type, fast.subject, fast.time, fast.partitionkey) == (
        ref.id, ref.type, ref.subject, ref.time, ref.partitionkey)
    assert orjson.dumps(fast.data) == orjson.dumps(ref.data)  # NaN-safe equality of the payload
    assert fast.__pydantic_fields_set__ == ref.__pydantic_fields_set__
    read = Envelope.from_bytes(fast.to_bytes())  # the contract validates it on read
    read.payload()
    assert read.id == fast.id


def assert_same_result(fast: Any, ref: Any) -> None:
    if fast[0] == "value" and isinstance(fast[1], Mapped):
        assert ref[0] == "value" and isinstance(ref[1], Mapped)
        assert fast[1].unknown_disposition == ref[1].unknown_disposition
        assert len(fast[1].events) == len(ref[1].events)
        for f, r in zip(fast[1].events, ref[1].events, strict=True):
            assert_same_envelope(f, r)
    else:
        assert fast == ref


def compare_row(
    profile: Profile, row: dict[str, Any], observed_at: datetime | None, keyring_name: str
) -> None:
    keyring = keyrings()[keyring_name]
    fast = CadMapper(profile, keyring=keyring, clock=lambda: CLOCK)
    ref = CadMapper(profile, keyring=keyring, reference=True)
    record = RawRecord("x.csv:2", b"raw", row, observed_at=observed_at)
    assert outcome(lambda: fast.persons_to_seal(record)) == outcome(lambda: ref.persons_to_seal(record))
    key = outcome(lambda: fast.revision_key(record))
    assert key == outcome(lambda: ref.revision_key(record))
    own = key[1].revision if key[0] == "value" and key[1] is not None else None
    for first in (None, own, *OTHER_REVISIONS):
        # a fresh pair per revision: the first map of a record uses revision_key's parse
        f, r = CadMapper(profile, keyring=keyring, clock=lambda: CLOCK), CadMapper(
            profile, keyring=keyring, reference=True)
        assert_same_result(outcome(lambda f=f, v=first: f.map(record, v)),
                           outcome(lambda r=r, v=first: r.map(record, v)))
    # and after revision_key (the shared parse)
    assert_same_result(outcome(lambda: fast.map(record, own)), outcome(lambda: ref.map(record, own)))


# --------------------------------------------------------------------------- the properties


@SETTINGS
@given(st.data(), profiles, observed, st.sampled_from(["none", "keys", "erased"]))
def test_fast_rows_map_exactly_like_the_reference(
    data: st.DataObject, profile: Profile, observed_at: datetime | None, keyring_name: str
) -> None:
    compare_row(profile, data.draw(rows(profile)), observed_at, keyring_name)


@SETTINGS
@given(st.data(), profiles)
def test_revised_rows_map_exactly_like_the_reference(data: st.DataObject, profile: Profile) -> None:
    """A re-export of a row with some fields changed: both paths agree on the revision and
    the CallRevised it gives against the first one."""
    first = data.draw(rows(profile))
    changed = dict(first)
    for column in data.draw(st.lists(st.sampled_from(sorted(first)), max_size=3, unique=True)):
        changed[column] = data.draw(field_values(profile, column, None))
    fast, ref = CadMapper(profile, clock=lambda: CLOCK), CadMapper(profile, reference=True)
    a, b = RawRecord("a", b"", first), RawRecord("b", b"", changed)
    key_f, key_r = outcome(lambda: fast.revision_key(a)), outcome(lambda: ref.revision_key(a))
    assert key_f == key_r
    revision = key_f[1].revision if key_f[0] == "value" and key_f[1] is not None else None
    assert_same_result(outcome(lambda: fast.map(b, revision)), outcome(lambda: ref.map(b, revision)))


def csv_text(profile: Profile, table: list[dict[str, Any]], short: list[bool]) -> tuple[str, list[list[str]]]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(profile.columns)
    written = []
    for row, cut in zip(table, short, strict=True):
        values = ["" if row.get(c) is None else str(row.get(c)) for c in profile.columns]
        values = values[:-1] if cut else values
        writer.writerow(values)
        written.append(values)
    return buf.getvalue(), written


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), profiles, st.sampled_from(["none", "keys"]))
def test_csv_batches_ingest_exactly_like_the_reference(
    data: st.DataObject, profile: Profile, keyring_name: str
) -> None:
    """Whole CSV batches through the runner (damaged rows, repeats and revisions of one call
    included): the same counts, the same events, the same dead letters."""
    n = data.draw(st.integers(1, 4))
    table = [data.draw(rows(profile)) for _ in range(n)]
    for row in table:
        for column in profile.columns:  # CSV cells are text
            row[column] = "" if row.get(column) is None else str(row[column]).replace("\r", "")
    table += data.draw(st.lists(st.sampled_from(table), max_size=2))  # repeats / re-exports
    short = [data.draw(st.integers(0, 7)) == 0 for _ in table]
    text, written = csv_text(profile, table, short)
    keyring = keyrings()[keyring_name]
    results = []
    for mapper in (CadMapper(profile, keyring=keyring, clock=lambda: CLOCK),
                   CadMapper(profile, keyring=keyring, reference=True)):
        records = list(parse_csv(text, profile, "f.csv", CLOCK))
        log = MemoryLog()
        sink = DeadLetterSink(mapper.source, "cad", SEAL)
        counts = outcome(lambda m=mapper, r=records, g=log, k=sink: asyncio.run(ingest_batch(r, m, g, k)))
        results.append((records, counts, log))
    (records, fast_counts, fast_log), (_, ref_counts, ref_log) = results
    if fast_counts[0] == "raised":  # a row the reference cannot even read fails its batch: so does this
        assert fast_counts == ref_counts
        return
    assert fast_counts[1].as_dict() == ref_counts[1].as_dict()
    assert len(fast_log.events) == len(ref_log.events)
    for f, r in zip(fast_log.events, ref_log.events, strict=True):
        assert_same_envelope(f, r)
    assert fast_log.letters.keys() == ref_log.letters.keys()  # ids cover source, ref and raw bytes
    for letter_id, letter in fast_log.letters.items():
        other = ref_log.letters[letter_id]
        assert (letter.record_ref, letter.stage, letter.reason) == (
            other.record_ref, other.stage, other.reason)
    # the lazily written raw bytes are the row as one CSV line
    lines = {}
    for values in written:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        lines[buf.getvalue().encode()] = True
    assert all(rec.raw in lines for rec in records)


# --------------------------------------------------------------------------- the pieces


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.one_of(st.text(), st.integers()), st.text())
def test_deterministic_id_is_uuid5(source: str, record_id: str, revision: str | int, kind: str) -> None:
    name = "\x1f".join((source, record_id, str(revision), kind))
    try:
        expected = str(uuid.uuid5(ID_NAMESPACE, name))
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        with pytest.raises(UnicodeEncodeError):
            deterministic_id(source, record_id, revision, kind)
        return
    assert deterministic_id(source, record_id, revision, kind) == expected


FORMATS = ["%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%Y/%m/%d %I:%M:%S %p", "%Y-%m-%d %H:%M:%S",
           "%d.%m.%Y %H:%M", "%m/%d/%Y %I %p", "%Y%m%d", "%b %d %Y"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FORMATS), st.one_of(
    st.builds(lambda dt, fmt_variant: (dt, fmt_variant), st.datetimes(), st.integers(0, 3)),
    st.text(alphabet="0123456789/: APMapm.-", max_size=24)))
def test_time_parser_equals_strptime(fmt: str, value: Any) -> None:
    if isinstance(value, tuple):
        dt, variant = value
        value = dt.strftime(fmt)
        value = [value, value.lower(), value.replace("/0", "/"), value + " "][variant]
    try:
        expected: datetime | None = datetime.strptime(value, fmt)
    except ValueError:
        expected = None
    assert time_parser(fmt)(value) == expected


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["America/Los_Angeles", "America/Chicago", "Australia/Lord_Howe", "Europe/Dublin",
                        "Asia/Kathmandu", "UTC"]), st.data())
def test_local_time_equals_zoneinfo(zone_name: str, data: st.DataObject) -> None:
    zone = ZoneInfo(zone_name)
    local = LocalTime(zone)
    days = dst_days(zone_name)
    naive = data.draw(st.one_of(
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1)),
        st.builds(lambda d, m: d + timedelta(minutes=m), st.sampled_from(days or [datetime(2024, 1, 1)]),
                  st.integers(0, 24 * 60 - 1)),
    ))
    for _ in range(2):  # the second time from the cache
        got = local.to_utc(naive)
        assert got == naive.replace(tzinfo=zone).astimezone(UTC)
        assert got.tzinfo is UTC
