"""CAD profiles on realistic rows: the real Seattle sample, quoted commas, blank times,
AM/PM and ISO times, zones, malformed rows, unknown dispositions, excluded rows."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.cad.csvfile import CsvLayoutError, parse_csv
from connectors.cad.ingest import ingest_files
from connectors.cad.mapping import CadMapper, read_row
from connectors.cad.profile import check_custom, load_profile, profile_names
from connectors.core.memory import MemoryLog, MemoryRevisionStore
from connectors.core.records import Exclusion, Mapped, RawRecord, Rejection
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel import metrics
from hub.kernel.crypto import MemoryKeyring, unseal
from hub.kernel.errors import ConfigError
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.settings import PROJECT_ROOT, CustomSettings, Settings
from hub.kernel.vocabulary import load_vocabulary
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive
from schemas.base import Sealed

DATA = PROJECT_ROOT / "tests" / "data" / "cad"
SEATTLE = DATA / "seattle" / "call-data-sample.csv"
SEAL = DeadLetterSealer(bytes(32))
BH_WORDS = ("suicid", "crisis", "mental", "behavioral", "emotional", "welfare check", "overdose")


def meaning(events) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    """Incident rows by CAD number: what the projections make of the facts (with the
    bundled vocabularies)."""
    rows = derive([fact_from_envelope(e) for e in events], FoldConfig(timezone="UTC"))["incident_summary"]
    return {r["incident_id"].split(":", 1)[1]: r for r in rows.values()}


def csv_text(profile_name: str, rows: list[dict[str, str]]) -> str:
    p = load_profile(profile_name)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(p.columns)
    for row in rows:
        w.writerow([row.get(c, "") for c in p.columns])
    return buf.getvalue()


def map_rows(profile_name: str, text: str) -> list:  # type: ignore[type-arg]
    p = load_profile(profile_name)
    m = CadMapper(p)
    return [
        m.map(r) if r.problem is None else Rejection("parse", r.problem) for r in parse_csv(text, p, "t.csv")
    ]


def test_all_bundled_profiles_load() -> None:
    assert {"seattle", "new_orleans", "san_francisco", "generic", "eido"} <= set(profile_names())
    for name in profile_names():
        assert load_profile(name).name == name


def test_real_seattle_sample_zero_dead_letters_and_reimport_appends_nothing() -> None:
    p = load_profile("seattle")
    log = MemoryLog()
    first = asyncio.run(ingest_files([SEATTLE], p, log, SEAL))
    again = asyncio.run(ingest_files([SEATTLE], p, log, SEAL))
    assert first.read == 222 and first.dead_lettered == 0 and first.appended == 222 and first.balanced()
    assert first.unknown_dispositions == 0
    assert again.appended == 0 and again.events_appended == 0 and again.duplicates == 222
    received = log.of_type("cad.call.received")
    assert len(received) == 222
    # the facts keep the source's words: no meaning in them
    assert all("behavioral_health" not in e.data and e.data["vocabulary"] == "seattle" for e in received)
    # behavioral-health flags follow Seattle's rule (BH words in the *final* call type) exactly
    with open(SEATTLE, newline="", encoding="utf-8") as fh:
        expected = {
            r["CAD Event Number"]: any(w in r["Final Call Type"].lower() for w in BH_WORDS)
            for r in csv.DictReader(fh)
        }
    got = {cad: row["behavioral_health"] for cad, row in meaning(log.events).items()}
    assert got == expected and sum(got.values()) == 8  # the 8 "--CRISIS COMPLAINT - GENERAL" rows
    onview = [e for e in received if e.data["self_initiated"]]
    assert len(onview) == 13


def test_seattle_times_are_local_stored_as_utc_with_zone() -> None:
    (res,) = map_rows(
        "seattle",
        csv_text(
            "seattle",
            [
                {
                    "CAD Event Number": "1",
                    "Event Clearance Description": "ASSISTANCE RENDERED",
                    "Call Type": "911",
                    "Initial Call Type": "SERVICE - WELFARE CHECK",
                    "Original Time Queued": "07/04/2023 11:59:59 PM",
                    "Arrived Time": "",
                    "Blurred_Longitude": "-122.3",
                    "Blurred_Latitude": "47.6",
                }
            ],
        ),
    )
    assert isinstance(res, Mapped)
    call = res.events[0].data
    assert call["at"] == "2023-07-05T06:59:59Z" and call["source_timezone"] == "America/Los_Angeles"
    # a welfare check in the *initial* type only: not a BH call by Seattle's final-type rule
    assert call["call_type_initial"] == "SERVICE - WELFARE CHECK"
    assert meaning(res.events)["1"]["behavioral_health"] is False
    assert [e.type for e in res.events] == [
        "cad.call.received.v4",
        "cad.call.disposition.v2",
    ]  # blank arrival ok


def test_quoted_commas_iso_times_and_winter_offset() -> None:
    (res,) = map_rows(
        "seattle",
        csv_text(
            "seattle",
            [
                {
                    "CAD Event Number": "2",
                    "Event Clearance Description": "INCIDENT LOCATED, PUBLIC ORDER RESTORED",
                    "Initial Call Type": "PREMISE CHECK, OFFICER INITIATED ONVIEW ONLY",
                    "Original Time Queued": "2023-01-15T08:00:00",
                    "Arrived Time": "2023-01-15T08:10:00-08:00",
                }
            ],
        ),
    )
    assert isinstance(res, Mapped)
    assert res.events[0].data["at"] == "2023-01-15T16:00:00Z"
    assert res.events[1].data["at"] == "2023-01-15T16:10:00Z"
    assert res.events[2].data["disposition_text"] == "INCIDENT LOCATED, PUBLIC ORDER RESTORED"
    assert meaning(res.events)["2"]["cad_outcome"] == "no_enforcement"


def test_malformed_rows_are_rejected_with_reasons() -> None:
    text = (
        csv_text(
            "seattle",
            [
                {"CAD Event Number": "3", "Original Time Queued": "13/45/2023 99:00:00 XM"},
                {"CAD Event Number": "", "Original Time Queued": "01/01/2023 1:00:00 AM"},
                {
                    "CAD Event Number": "5",
                    "Original Time Queued": "01/01/2023 1:00:00 AM",
                    "Blurred_Longitude": "east",
                },
            ],
        )
        + "6,ASSISTANCE RENDERED,911\n"
    )
    results = map_rows("seattle", text)
    assert all(isinstance(r, Rejection) for r in results)
    reasons = [r.reason for r in results]
    assert "Original Time Queued: unparseable time" in reasons[0]
    assert "CAD number is blank" in reasons[1]
    assert reasons[2] == "Blurred_Longitude: not a number"
    assert reasons[3] == "wrong column count: expected 13, found 3"
    assert "13/45" not in " ".join(reasons)  # reasons name columns, never values


def test_unknown_disposition_maps_to_unknown_and_is_counted() -> None:
    before = metrics.UNKNOWN_DISPOSITIONS.labels("cad/seattle")._value.get()
    text = csv_text(
        "seattle",
        [
            {
                "CAD Event Number": "7",
                "Event Clearance Description": "BRAND NEW CODE",
                "Original Time Queued": "01/01/2023 1:00:00 AM",
            }
        ],
    )
    p = load_profile("seattle")
    log = MemoryLog()
    keyring = MemoryKeyring()
    path_counts = asyncio.run(_ingest_text(text, p, log, keyring))
    assert path_counts.unknown_dispositions == 1 and path_counts.appended == 1
    (disposition,) = log.of_type("cad.call.disposition")
    # the source's words are kept, sealed: a text the vocabulary does not know may be free text
    assert disposition.data["disposition_text"] is None
    assert unseal(keyring, Sealed.model_validate(disposition.data["disposition_note"])) == {
        "disposition_text": "BRAND NEW CODE"}
    assert meaning(log.events)["7"]["cad_outcome"] == "unknown"
    assert metrics.UNKNOWN_DISPOSITIONS.labels("cad/seattle")._value.get() == before + 1


async def _ingest_text(text: str, profile, log, keyring=None):  # type: ignore[no-untyped-def]
    return await ingest_batch(
        list(parse_csv(text, profile, "t.csv")),
        CadMapper(profile, keyring=keyring),
        log,
        DeadLetterSink(profile.source, "cad", SEAL),
    )


NOLA_ROW = {
    "NOPD_Item": "A0000123",
    "Type_": "103",
    "TypeText": "DISTURBANCE",
    "Priority": "2A",
    "InitialType": "103",
    "InitialTypeText": "MENTAL PATIENT",
    "InitialPriority": "2A",
    "MapX": "3680000",
    "MapY": "530000",
    "TimeCreate": "01/01/2023 12:00:04 AM",
    "TimeDispatch": "01/01/2023 12:05:00 AM",
    "TimeArrive": "",
    "TimeClosed": "01/01/2023 01:00:00 AM",
    "Disposition": "NAT",
    "DispositionText": "Necessary Action Taken",
    "SelfInitiated": "N",
    "Beat": "7L04",
    "BLOCK_ADDRESS": "001XX Main St",
    "Zip": "70112",
    "PoliceDistrict": "7",
    "Location": "POINT (0 0)",
}


def test_new_orleans_row_and_excluded_rows() -> None:
    rows = [
        NOLA_ROW,
        {**NOLA_ROW, "NOPD_Item": "A2", "DispositionText": "VOID", "Disposition": "VOI"},
        {**NOLA_ROW, "NOPD_Item": "A3", "DispositionText": "DUPLICATE", "Disposition": "DUP"},
        {
            **NOLA_ROW,
            "NOPD_Item": "A4",
            "TypeText": "TEST INCIDENT",
            "Disposition": "X",
            "DispositionText": "X",
        },
    ]
    res = map_rows("new_orleans", csv_text("new_orleans", rows))
    assert isinstance(res[0], Mapped) and all(isinstance(r, Exclusion) for r in res[1:])
    call = res[0].events[0].data
    assert call["incident_id"] == "NOPD:A0000123" and meaning(res[0].events)["A0000123"]["behavioral_health"]
    assert call["at"] == "2023-01-01T06:00:04Z" and call["source_timezone"] == "America/Chicago"
    assert call["area"]["district"] == "7" and call["longitude"] is None
    types = [e.type for e in res[0].events]
    assert types == [
        "cad.call.received.v4", "cad.unit.dispatched.v1", "cad.unit.cleared.v1", "cad.call.disposition.v2"
    ]
    assert res[0].events[-1].data["at"] == "2023-01-01T07:00:00Z"


def test_new_orleans_excluded_rows_count_but_are_not_calls() -> None:
    p = load_profile("new_orleans")
    log = MemoryLog()
    text = csv_text(
        "new_orleans", [NOLA_ROW, {**NOLA_ROW, "NOPD_Item": "B", "DispositionText": "TEST INCIDENT"}]
    )
    counts = asyncio.run(_ingest_text(text, p, log))
    assert (counts.read, counts.appended, counts.excluded, counts.dead_lettered) == (2, 1, 1, 0)
    assert len(log.of_type("cad.call.received")) == 1


SF_ROW = {
    "cad_number": "241230001",
    "received_datetime": "2024-05-02T10:00:00.000",
    "onscene_datetime": "2024-05-02T10:20:00.000",
    "close_datetime": "2024-05-02T11:00:00.000",
    "call_type_original_desc": "WELL BEING CHECK",
    "call_type_final_desc": "WELL BEING CHECK",
    "priority_final": "B",
    "disposition": "HAN",
    "onview_flag": "N",
    "police_district": "MISSION",
}


def test_san_francisco_agency_rule_and_revisions() -> None:
    p = load_profile("san_francisco")
    sf, generic = load_vocabulary("san_francisco"), load_vocabulary("generic")
    assert sf.is_behavioral_health("WELL BEING CHECK", None)  # SF extends the default rule
    assert not generic.is_behavioral_health("WELL BEING CHECK", None)
    m = CadMapper(p)
    from connectors.core.records import RawRecord

    r1 = RawRecord("a", b"", {**SF_ROW, "data_updated_at": "2024-05-02T12:00:00.000"})
    r2 = RawRecord("b", b"", {**SF_ROW, "data_updated_at": "2024-05-03T12:00:00.000", "disposition": "ARR"})
    k1, k2 = m.revision_key(r1), m.revision_key(r2)
    assert k1 and k2 and k1.key == k2.key == "SFPD:241230001" and k1.revision != k2.revision
    first = m.map(r1, k1.revision)
    later = m.map(r2, k1.revision)
    assert isinstance(first, Mapped) and isinstance(later, Mapped)
    assert "cad.call.revised.v3" not in [e.type for e in first.events]
    revised = [e for e in later.events if e.type == "cad.call.revised.v3"]
    assert len(revised) == 1 and revised[0].data["disposition_code"] == "ARR"
    assert meaning([*first.events, *revised])["241230001"]["cad_outcome"] == "arrest"
    assert revised[0].data["revision"] == "2024-05-03T19:00:00+00:00"
    # the first-revision facts have the same ids whichever revision was seen first
    assert first.events[0].id == later.events[0].id


def test_revised_row_is_one_revision_fact_not_a_second_call() -> None:
    p = load_profile("san_francisco")
    from connectors.core.records import RawRecord

    log, revs = MemoryLog(), MemoryRevisionStore()
    sink = DeadLetterSink(p.source, "cad", SEAL)
    r1 = RawRecord("a", b"", {**SF_ROW, "data_updated_at": "2024-05-02T12:00:00.000"})
    r2 = RawRecord("b", b"", {**SF_ROW, "data_updated_at": "2024-05-03T12:00:00.000", "disposition": "CIT"})
    for batch in ([r1], [r1, r2], [r2], [r1]):
        assert asyncio.run(ingest_batch(batch, CadMapper(p), log, sink, revs)).balanced()
    assert len(log.of_type("cad.call.received")) == 1
    assert len(log.of_type("cad.call.revised")) == 1


def test_wrong_profile_is_refused_for_the_whole_file() -> None:
    with pytest.raises(CsvLayoutError, match="missing column"):
        list(parse_csv(SEATTLE.read_text(), load_profile("new_orleans"), "seattle.csv"))


def test_generic_profile_iso_with_offset() -> None:
    row = {
        "incident_number": "G1",
        "received_at": "2024-02-01T03:04:05+00:00",
        "call_type_initial": "OVERDOSE",
        "disposition_code": "VOLTX",
        "status": "",
    }
    (res,) = map_rows("generic", csv_text("generic", [row]))
    assert isinstance(res, Mapped)
    assert res.events[0].data["at"] == "2024-02-01T03:04:05Z"
    row_meaning = meaning(res.events)["G1"]
    assert row_meaning["call_category"] == "behavioral_health"
    assert row_meaning["cad_outcome"] == "voluntary_transport"
    assert datetime.fromisoformat(res.events[0].data["at"].replace("Z", "+00:00")).tzinfo == UTC


def test_redriver_maps_a_fixed_row_again() -> None:
    from datetime import UTC, datetime

    from connectors.cad.redrive import map_again
    from schemas.deadletter import DeadLetter

    row = b"1,ASSISTANCE RENDERED,911,2,OVERDOSE,,01/01/2023 1:00:00 AM,,EAST,C,C3,-122.3,47.6\n"
    dl = DeadLetter(
        id="dl_x",
        source="cad/seattle",
        source_family="cad",
        record_ref="f:2",
        stage="parse",
        reason="r",
        profile="seattle",
        at=datetime.now(UTC),
    )
    events = map_again(dl, row, load_profile("seattle"))
    assert [e.type for e in events] == ["cad.call.received.v4", "cad.call.disposition.v2"]
    with pytest.raises(ValueError, match="unparseable time"):
        map_again(dl, row.replace(b"01/01/2023 1:00:00 AM", b"garbage"), load_profile("seattle"))


# Column names exactly as the cities publish them (the lists in the design brief).
PUBLISHED_COLUMNS = {
    "seattle": (
        "CAD Event Number, Event Clearance Description, Call Type, Priority, Initial Call Type, "
        "Final Call Type, Original Time Queued, Arrived Time, Precinct, Sector, Beat, "
        "Blurred_Longitude, Blurred_Latitude"
    ),
    "new_orleans": (
        "NOPD_Item, Type_, TypeText, Priority, InitialType, InitialTypeText, InitialPriority, MapX, MapY, "
        "TimeCreate, TimeDispatch, TimeArrive, TimeClosed, Disposition, DispositionText, SelfInitiated, "
        "Beat, BLOCK_ADDRESS, Zip, PoliceDistrict, Location"
    ),
    "san_francisco": (
        "cad_number, received_datetime, entry_datetime, dispatch_datetime, enroute_datetime, "
        "onscene_datetime, close_datetime, call_type_original, call_type_original_desc, call_type_final, "
        "call_type_final_desc, priority_original, priority_final, agency, disposition, onview_flag, "
        "sensitive_call, intersection_name, analysis_neighborhood, police_district"
    ),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_COLUMNS))
def test_city_profiles_use_the_published_column_names(name: str) -> None:
    p = load_profile(name)
    assert p.columns == [c.strip() for c in PUBLISHED_COLUMNS[name].split(",")]
    # every column the mapping reads is a published one (SF's data_updated_at is an API
    # column, optional in files)
    assert set(p.required_columns) <= set(p.columns)
    assert {c for f, c in p.fields.items() if f != "updated_at"} <= set(p.columns)


def test_city_disposition_maps_are_plausible() -> None:
    sf = load_vocabulary("san_francisco")
    expected_sf = {
        "ADV": "no_enforcement",  # advised
        "HAN": "no_enforcement",  # handled
        "NOM": "administrative",  # no merit: a process code
        "REP": "no_enforcement",  # report made
        "ARR": "arrest",
        "CIT": "citation",
        "GOA": "unable_to_locate",  # gone on arrival
        "UTL": "unable_to_locate",
        "CAN": "cancelled",
        "22": "cancelled",  # radio code 22: cancel
    }
    assert {code: sf.dispositions[code] for code in expected_sf} == expected_sf
    nola = load_vocabulary("new_orleans")
    expected_nola = {
        "Necessary Action Taken": "no_enforcement",
        "REPORT TO FOLLOW": "no_enforcement",
        "UNFOUNDED": "administrative",  # a process code
        "GONE ON ARRIVAL": "unable_to_locate",
        "ARREST": "arrest",
    }
    assert {
        text: nola.outcome(None, text)[0]  # type: ignore[index]
        for text in expected_nola
    } == expected_nola
    # NOPD spells its test rows "Test Incident" and "Test incident": both are excluded
    for spelling in ("Test Incident", "Test incident", "VOID", "DUPLICATE"):
        row = {**NOLA_ROW, "DispositionText": spelling, "Disposition": "X"}
        (res,) = map_rows("new_orleans", csv_text("new_orleans", [row]))
        assert isinstance(res, Exclusion), spelling


def test_a_profile_maps_columns_to_county_fields_in_the_source_words(tmp_path: Path) -> None:
    generic = load_profile("generic")
    county = generic.model_copy(update={"custom": {"housing": "Housing Status"}})
    assert "Housing Status" in county.required_columns
    fields = {"incident_number": "2026-9", "received_at": "2026-02-01T09:00:00-08:00",
              "call_type_final": "PERSON IN CRISIS", "Housing Status": " Unsheltered "}
    result = CadMapper(county).map(RawRecord("f.csv:2", b"", fields))
    assert isinstance(result, Mapped)
    received = next(e.data for e in result.events if e.type == "cad.call.received.v4")
    assert received["custom"] == {"housing": "Unsheltered"}  # the column's text, as the source wrote it
    # a profile without custom fields keeps its rows' content hash (no spurious revisions)
    plain = read_row(fields, generic)
    assert not isinstance(plain, Rejection) and plain.custom == ()
    assert plain.content_hash() == read_row({**fields, "Housing Status": "x"}, generic).content_hash()
    # the field must be declared for CAD in the county's definitions
    defs = tmp_path / "defs.yaml"
    defs.write_text("name: c\nversion: 1\nfields:\n  housing: {type: enum, values: [housed, unsheltered], "
                    "label: Housing, sources: [intake]}\n")
    settings = Settings(state_dir=tmp_path, custom=CustomSettings(definitions=str(defs)))
    with pytest.raises(ConfigError, match="custom field 'housing' does not list cad"):
        check_custom(county, settings)
    defs.write_text(defs.read_text().replace("[intake]", "[cad, intake]"))
    check_custom(county, settings)
    with pytest.raises(ConfigError, match="is not declared"):
        check_custom(county, Settings(state_dir=tmp_path))
    check_custom(generic, Settings(state_dir=tmp_path))  # nothing mapped: nothing to check
