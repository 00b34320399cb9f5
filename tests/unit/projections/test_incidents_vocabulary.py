"""Outcome truth (issue 15), purely: source files through the hub's mappers into facts, the
projections' folds with a vocabulary, and the report tables — checked against counts made
by hand from the rows (the expected numbers below were read off the files, not computed
by the code under test).

- meaning is a projection: the same facts with another vocabulary give other rows;
- Seattle's rule is the final call type; unmeasurable metrics are marked, never 0;
- time on scene only from real clear times; process codes are ``other``;
- revisions move a call to its corrected period and recompute its times and outcome;
- behavioral-health enrolment counts behavioral-health services only.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.cad.ingest import ingest_files
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.core.memory import MemoryLog
from connectors.core.records import Mapped, RawRecord
from hub.kernel.crypto import MemoryKeyring, incident_subject, seal
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.settings import PROJECT_ROOT
from hub.kernel.vocabulary import VocabularySet, load_vocabularies, load_vocabulary, parse_vocabulary
from projections import reporting
from projections import tables as T
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive
from projections.incidents import sealed_kids
from projections.store import vocabulary_meta
from schemas.case import ServiceEnrolled
from schemas.encounter import PersonIdentified
from schemas.envelope import Envelope
from tests.unit.projections.projection_events import PERSONS, at, fact

SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"
TZ = "America/Los_Angeles"
SEAL = DeadLetterSealer(bytes(32))


def seattle_events() -> list[Envelope]:
    log = MemoryLog()
    counts = asyncio.run(ingest_files([SEATTLE], load_profile("seattle"), log, SEAL))
    assert counts.dead_lettered == 0
    return log.events


def report(
    events: Sequence[Envelope], vocabularies: VocabularySet, small_cell_max: int, by: str | None = None
) -> dict[str, Any]:
    """The report document the reader would build over these facts (pure path)."""
    rows = derive([fact_from_envelope(e) for e in events], FoldConfig(timezone=TZ, vocabularies=vocabularies))
    bh = [r for r in rows[T.INCIDENT_SUMMARY.name].values() if r["behavioral_health"] and r["received_at"]]
    meta = vocabulary_meta(vocabularies)
    labels = {r["vocabulary"] for r in bh}
    unmeasured = reporting.unmeasured_metrics(labels, meta["vocabularies"])
    people = [(s["contacts"], s["enrolled_in_services"]) for s in rows[T.PERSON_SUMMARY.name].values()]
    return reporting.report_document(
        table=reporting.outcome_table(bh, by=by, tz=TZ, small_cell_max=small_cell_max, unmeasured=unmeasured),
        repeat=reporting.repeat_table(people, small_cell_max),
        times=reporting.response_times(bh, small_cell_max, unmeasured),
        funnel=reporting.referral_funnel([], small_cell_max),
        by=by,
        small_cell_max=small_cell_max,
        vocabulary=meta,
        unmeasured=unmeasured,
        notes=reporting.footnotes(labels, meta["vocabularies"]),
    )


def seattle_variant(version: int, replace: tuple[str, str]) -> VocabularySet:
    """The bundled vocabularies with Seattle's file edited (as a county would edit its copy)."""
    path = PROJECT_ROOT / "hub" / "kernel" / "vocabularies" / "seattle.yaml"
    text = path.read_text()
    assert replace[0] in text, replace[0]
    text = text.replace("version: 1", f"version: {version}").replace(*replace)
    edited = parse_vocabulary(text, "seattle.yaml")
    others = [v for v in load_vocabularies().vocabularies if v.name != "seattle"]
    return VocabularySet((*others, edited))


# ----------------------------------------------------------------------------- the Seattle sample


def test_seattle_sample_matches_the_hand_count_under_the_final_type_rule() -> None:
    # By hand: 8 rows have the final type "--CRISIS COMPLAINT - GENERAL" (no other final type
    # names a crisis, suicide, mental health or overdose); all are in precinct EAST; 7 cleared
    # "REPORT WRITTEN (NO ARREST)", 1 "OTHER REPORT MADE" (both: no enforcement). Queued ->
    # arrived: 3586, 665, 2288, 1053, 431, 664, 557, 615 s; sorted, the middle two are 664 and
    # 665, and the 90th percentile (inclusive) is 2288 + 0.3 * (3586 - 2288) = 2677.4.
    doc = report(seattle_events(), load_vocabularies(), small_cell_max=0, by="area")
    head = doc["headline"]
    assert head["calls"]["value"] == 8
    assert head["no_enforcement"]["value"] == 8 and head["no_enforcement"]["share"] == 1.0
    assert head["enforcement"]["value"] == 0  # Call Data does say arrests and citations: measured
    assert [
        (r["group_kind"], r["group"], r["metrics"]["calls"]["value"]) for r in doc["outcomes"]["rows"]
    ] == [("precinct", "EAST", 8)]
    times = doc["response_times"]["response_seconds"]
    assert (times["n"], times["median"], round(times["p90"], 1)) == (8, 664.5, 2677.4)
    # what Seattle Call Data cannot express is marked, never 0
    for name in (
        "voluntary_transport",
        "involuntary_hold",
        "emergency_department",
        "connected_to_services",
        "repeat_three_plus_enrolled",
    ):
        assert head[name]["value"] is None and head[name]["measured"] is False and head[name]["reason"], name
    on_scene = doc["response_times"]["time_on_scene_seconds"]
    assert on_scene["measured"] is False and on_scene["median"] is None and on_scene["n"] is None
    assert doc["vocabulary"]["label"] == load_vocabularies().label
    assert any("oral warning" in note for note in doc["footnotes"])


def test_seattle_small_counts_stay_suppressed_and_unmeasured_cells_are_not_zero() -> None:
    doc = report(seattle_events(), load_vocabularies(), small_cell_max=10)
    head = doc["headline"]
    assert head["calls"] == {"value": None, "share": None, "suppressed": True, "measured": True}
    assert (
        head["voluntary_transport"]["measured"] is False
        and head["voluntary_transport"]["suppressed"] is False
    )
    assert reporting.cell_text(head["voluntary_transport"]) == ("not measured", "")
    assert not [v for _, v in reporting.published_cells(doc) if 1 <= v <= 10]


def test_changing_the_rule_reclassifies_the_same_facts() -> None:
    # The initial-or-final rule also matches 6 rows whose *initial* type names a welfare check
    # (3), a critical suicide call (1) or an overdose (2): 14 in all. Of the 6: 4 "ASSISTANCE
    # RENDERED" and 1 "REPORT WRITTEN (NO ARREST)" (no enforcement), 1 "UNABLE TO LOCATE" (other);
    # one of the welfare checks has no arrival time, so 13 response times.
    events = seattle_events()
    wider = seattle_variant(
        2, ("fields: [call_type_final, crisis_template]", "fields: [call_type_initial, call_type_final]")
    )
    doc = report(events, wider, small_cell_max=0)
    outcomes = doc["outcomes"]["total"]
    assert outcomes["calls"]["value"] == 14
    assert outcomes["outcome.no_enforcement"]["value"] == 13 and outcomes["outcome.other"]["value"] == 1
    assert doc["response_times"]["response_seconds"]["n"] == 13
    assert "seattle@2" in doc["vocabulary"]["label"]


def test_fixing_a_disposition_mapping_changes_past_outcomes_without_reingest() -> None:
    # "OTHER REPORT MADE" moved from no enforcement to a (hypothetical) citation: 1 of the 8
    events = seattle_events()
    before = report(events, load_vocabularies(), small_cell_max=0)
    after = report(
        events,
        seattle_variant(2, ("OTHER REPORT MADE: no_enforcement", "OTHER REPORT MADE: citation")),
        small_cell_max=0,
    )
    assert before["headline"]["enforcement"]["value"] == 0
    assert (
        after["headline"]["enforcement"]["value"] == 1 and after["headline"]["no_enforcement"]["value"] == 7
    )


# ----------------------------------------------------------------------------- hand-built feeds

SEATTLE_COLUMNS = load_profile("seattle").columns


def seattle_row(
    n: str, clearance: str, final: str, queued: str, arrived: str = "", precinct: str = "NORTH"
) -> dict[str, str]:
    return {
        "CAD Event Number": n,
        "Event Clearance Description": clearance,
        "Call Type": "911",
        "Priority": "2",
        "Initial Call Type": "SUICIDE - SUICIDAL PERSON AND ATTEMPTS",
        "Final Call Type": final,
        "Original Time Queued": queued,
        "Arrived Time": arrived,
        "Precinct": precinct,
        "Sector": "",
        "Beat": "",
        "Blurred_Longitude": "",
        "Blurred_Latitude": "",
    }


def mapped(
    profile_name: str, rows: list[dict[str, str]], first_revision: dict[str, str] | None = None
) -> list[Envelope]:
    mapper = CadMapper(load_profile(profile_name))
    out: list[Envelope] = []
    for i, row in enumerate(rows):
        rec = RawRecord(f"r{i}", b"", row)
        result = mapper.map(rec, (first_revision or {}).get(row[SEATTLE_COLUMNS[0]]))
        assert isinstance(result, Mapped)
        out += result.events
    return out


def test_process_codes_are_other_and_oral_warning_is_no_enforcement() -> None:
    crisis = "--CRISIS COMPLAINT - GENERAL"
    rows = [
        seattle_row("1", "FALSE COMPLAINT/UNFOUNDED", crisis, "03/01/2024 10:00:00 AM"),
        seattle_row("2", "PRIORITY CALL HANDLING", crisis, "03/01/2024 11:00:00 AM"),
        seattle_row("3", "PROBLEM SOLVING PROJECT", crisis, "03/01/2024 12:00:00 PM"),
        seattle_row("4", "ORAL WARNING GIVEN", crisis, "03/01/2024 01:00:00 PM"),
        seattle_row("5", "PHYSICAL ARREST MADE", crisis, "03/01/2024 02:00:00 PM"),
    ]
    doc = report(mapped("seattle", rows), load_vocabularies(), small_cell_max=0)
    total = doc["outcomes"]["total"]
    assert total["calls"]["value"] == 5
    assert total["outcome.other"]["value"] == 3  # the three process codes
    assert total["outcome.no_enforcement"]["value"] == 1  # the oral warning
    assert total["outcome.arrest_or_citation"]["value"] == 1


def test_a_revision_moves_the_call_to_its_corrected_period_and_recomputes_it() -> None:
    crisis = "--CRISIS COMPLAINT - GENERAL"
    first = seattle_row(
        "9", "REPORT WRITTEN (NO ARREST)", crisis, "01/31/2024 11:50:00 PM", "02/01/2024 12:10:00 AM"
    )
    # the re-export corrects the received time (into February) and the clearance
    revised = {
        **first,
        "Original Time Queued": "02/01/2024 12:05:00 AM",
        "Event Clearance Description": "PHYSICAL ARREST MADE",
    }
    mapper = CadMapper(load_profile("seattle"))
    k1 = mapper.revision_key(RawRecord("a", b"", first))
    assert k1 is not None
    one = mapper.map(RawRecord("a", b"", first), k1.revision)
    two = mapper.map(RawRecord("b", b"", revised), k1.revision)
    assert isinstance(one, Mapped) and isinstance(two, Mapped)
    before = report(one.events, load_vocabularies(), small_cell_max=0, by="month")
    after = report([*one.events, *two.events], load_vocabularies(), small_cell_max=0, by="month")
    months = [(r["group"], r["metrics"]["calls"]["value"]) for r in before["outcomes"]["rows"]]
    assert months == [("2024-01", 1)]
    months = [(r["group"], r["metrics"]["calls"]["value"]) for r in after["outcomes"]["rows"]]
    assert months == [("2024-02", 1)]  # January lost it: the call moved
    # 23:50 -> 00:10 is 20 minutes before; 00:05 -> 00:10 is 5 minutes after the correction
    assert before["response_times"]["response_seconds"]["median"] == 1200.0
    assert after["response_times"]["response_seconds"]["median"] == 300.0
    assert (
        after["headline"]["enforcement"]["value"] == 1 and after["headline"]["no_enforcement"]["value"] == 0
    )


def test_time_on_scene_only_from_real_clear_times() -> None:
    # generic rows: one with a closed time (on scene 10:20 -> closed 11:00 = 2400 s), one without
    text = io.StringIO()
    cols = load_profile("generic").columns
    w = csv.DictWriter(text, fieldnames=cols)
    w.writeheader()
    base = {"call_type_final": "CRISIS", "disposition_code": "NOACT", "status": ""}
    w.writerow(
        {
            **base,
            "incident_number": "A",
            "received_at": "2024-03-01T10:00:00+00:00",
            "onscene_at": "2024-03-01T10:20:00+00:00",
            "closed_at": "2024-03-01T11:00:00+00:00",
        }
    )
    w.writerow(
        {
            **base,
            "incident_number": "B",
            "received_at": "2024-03-02T10:00:00+00:00",
            "onscene_at": "2024-03-02T10:30:00+00:00",
        }
    )
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    mapper = CadMapper(load_profile("generic"))
    events = [e for i, r in enumerate(rows) for e in mapper.map(RawRecord(str(i), b"", r)).events]  # type: ignore[union-attr]
    derived = derive([fact_from_envelope(e) for e in events], FoldConfig(timezone="UTC"))
    on_scene = {
        r["incident_id"]: r["time_on_scene_seconds"] for r in derived[T.INCIDENT_SUMMARY.name].values()
    }
    assert on_scene == {"COUNTY:A": 2400.0, "COUNTY:B": None}  # never 0 s from a disposition time


def test_bh_enrolment_counts_behavioral_health_services_only() -> None:
    # three people with 3 contacts each: one enrolled in outpatient mental health, one in
    # housing assistance, one in both — 2 of 3 are enrolled in behavioral-health services
    facts = []
    services = {
        PERSONS[0]: ["outpatient_mh"],
        PERSONS[1]: ["housing_assistance"],
        PERSONS[2]: ["housing", "substance_use_treatment"],
    }
    for k, (person, types) in enumerate(services.items()):
        for c in range(3):
            facts.append(fact(PersonIdentified(incident_id=f"sea:{k}{c}", at=at(10 * c + k), person=person)))
        for t in types:
            facts.append(
                fact(ServiceEnrolled(case_id=f"c{k}", person=person, at=at(40), service_type=t, provider="p"))
            )
    rows = derive(facts, FoldConfig(timezone="UTC"))
    enrolled = {s["person"]: s["enrolled_in_services"] for s in rows[T.PERSON_SUMMARY.name].values()}
    assert enrolled == {PERSONS[0]: True, PERSONS[1]: False, PERSONS[2]: True}
    people = [(s["contacts"], s["enrolled_in_services"]) for s in rows[T.PERSON_SUMMARY.name].values()]
    assert reporting.repeat_table(people, 0)["three_plus_enrolled"]["value"] == 2


def test_old_facts_are_upcast_and_classified_by_their_agencys_vocabulary() -> None:
    # a v2 CallReceived (meaning frozen at ingest: not BH) of SPD with a crisis final type
    old = Envelope.model_validate(
        {
            "specversion": "1.0",
            "id": "evt_old",
            "source": "cad/seattle",
            "type": "cad.call.received.v2",
            "subject": "SPD:1",
            "partitionkey": "SPD:1",
            "time": "2024-03-01T10:00:00Z",
            "recordedat": "2024-03-01T10:00:00Z",
            "dataschema": "urn:coresponder-hub:schema:cad.call.received.v2",
            "data": {
                "incident_id": "SPD:1",
                "agency": "SPD",
                "cad_number": "1",
                "at": "2024-03-01T10:00:00Z",
                "source_timezone": "America/Los_Angeles",
                "category": "other",
                "behavioral_health": False,
                "call_type_initial": "TRESPASS",
                "call_type_final": "--CRISIS COMPLAINT - GENERAL",
            },
        }
    )
    (row,) = derive([fact_from_envelope(old)], FoldConfig(timezone=TZ))[T.INCIDENT_SUMMARY.name].values()
    assert row["behavioral_health"] is True and row["vocabulary"] == load_vocabulary("seattle").label
    assert row["received_at"] == datetime(2024, 3, 1, 10, tzinfo=UTC)


# ----------------------------------------------------------------------------- sealed words


def test_a_text_unknown_at_ingest_is_sealed_and_a_later_vocabulary_still_classifies_it() -> None:
    """A clearance text the vocabulary in force at ingest does not know may be free text a
    dispatcher typed: it never enters the log in clear, it is sealed with the incident's
    key. The projections open it with the keyring to classify it, so a vocabulary that
    later names it reclassifies the call without re-ingest; once the incident is erased it
    no longer opens and counts as the ingest vocabulary counted it (unknown)."""
    crisis = "--CRISIS COMPLAINT - GENERAL"
    name_text = "TOOK JANE QUIMBY DOB 07/19/1984 TO HARBORVIEW"
    rows = [
        seattle_row("1", "DCR ITA DETENTION", crisis, "03/01/2024 10:00:00 AM"),  # a new code
        seattle_row("2", name_text, crisis, "03/01/2024 11:00:00 AM"),  # free text
        seattle_row("3", "PHYSICAL ARREST MADE", crisis, "03/01/2024 12:00:00 PM"),  # known: clear
    ]
    keyring = MemoryKeyring()
    mapper = CadMapper(load_profile("seattle"), keyring=keyring)
    events: list[Envelope] = []
    for i, row in enumerate(rows):
        result = mapper.map(RawRecord(f"r{i}", b"", row), None)
        assert isinstance(result, Mapped)
        events += result.events
    logged = " ".join(e.model_dump_json() for e in events)
    assert "DCR ITA DETENTION" not in logged and "QUIMBY" not in logged and "07/19/1984" not in logged
    assert "PHYSICAL ARREST MADE" in logged  # a label the ingest vocabulary knows stays clear
    facts = [fact_from_envelope(e) for e in events]
    assert sealed_kids((f.event_type, f.data) for f in facts) == {
        keyring.key_id(incident_subject("SPD:1")), keyring.key_id(incident_subject("SPD:2"))}

    fixed = seattle_variant(2, ("OTHER REPORT MADE: no_enforcement",
                                "OTHER REPORT MADE: no_enforcement\n  DCR ITA DETENTION: involuntary_hold"))

    def outcomes(vocabularies: VocabularySet, keys: MemoryKeyring | None) -> dict[str, str | None]:
        rows = derive(facts, FoldConfig(timezone=TZ, vocabularies=vocabularies), keys)
        return {r["incident_id"]: r["cad_outcome"] for r in rows[T.INCIDENT_SUMMARY.name].values()}

    ingest_time = {"SPD:1": "unknown", "SPD:2": "unknown", "SPD:3": "arrest"}
    assert outcomes(load_vocabularies(), keyring) == ingest_time
    assert outcomes(fixed, keyring) == {**ingest_time, "SPD:1": "involuntary_hold"}
    assert outcomes(fixed, None) == ingest_time  # without the keys the words are unknown
    keyring.destroy(incident_subject("SPD:1"))  # erased with a linked person
    assert outcomes(fixed, keyring) == ingest_time
    # the timeline of the call shows the code or nothing, never the opened text
    timeline = derive(facts, FoldConfig(timezone=TZ, vocabularies=fixed), keyring)[T.TIMELINE_ENTRIES.name]
    assert "QUIMBY" not in str(timeline) and "DCR ITA" not in str(timeline)


def test_facts_sealed_before_vocabularies_are_upcast_with_their_sealed_words() -> None:
    """The facts main recorded with sealed free text (``cad.call.received.v2`` with sealed
    remarks, ``cad.call.disposition.v1`` whose clearance text was sealed as
    ``disposition_note`` beside the outcome mapped at ingest) upcast to the current versions
    keeping what is sealed; the stated outcome does not become a code (the text is the
    source's word), and a vocabulary that names the text classifies it."""
    keyring = MemoryKeyring()
    subject = incident_subject("SPD:7")

    def sealed(field: str, value: str) -> dict[str, Any]:
        return seal(keyring, subject, {field: value}, context=f"test\x1f{field}").model_dump(mode="json")

    def stored(event_type: str, data: dict[str, Any]) -> Envelope:
        return Envelope.model_validate({
            "specversion": "1.0", "id": f"evt_{event_type}", "source": "cad/seattle", "type": event_type,
            "subject": "SPD:7", "partitionkey": "SPD:7", "time": "2024-03-01T10:00:00Z",
            "recordedat": "2024-03-01T10:00:00Z", "dataschema": f"urn:coresponder-hub:schema:{event_type}",
            "data": {"incident_id": "SPD:7", "at": "2024-03-01T10:00:00Z", **data},
        })

    received = stored("cad.call.received.v2", {
        "agency": "SPD", "cad_number": "7", "source_timezone": "America/Los_Angeles", "category": "other",
        "behavioral_health": True, "call_type_final": "--CRISIS COMPLAINT - GENERAL",
        "longitude": -122.335, "latitude": 47.608, "remarks": sealed("remarks", "RP JANE QUIMBY"),
    })
    disposition = stored("cad.call.disposition.v1", {
        "disposition_code": None, "disposition_text": None, "outcome": "unknown",
        "disposition_note": sealed("disposition_text", "DCR ITA DETENTION"),
    })
    r, d = received.current(), disposition.current()
    assert (r.type, d.type) == ("cad.call.received.v4", "cad.call.disposition.v2")
    assert r.data["remarks"] == received.data["remarks"] and r.data["longitude"] == -122.335
    assert d.data["disposition_note"] == disposition.data["disposition_note"]
    assert d.data["disposition_code"] is None and "outcome" not in d.data
    facts = [fact_from_envelope(received), fact_from_envelope(disposition)]
    fixed = seattle_variant(2, ("OTHER REPORT MADE: no_enforcement",
                                "OTHER REPORT MADE: no_enforcement\n  DCR ITA DETENTION: involuntary_hold"))
    for vocabularies, expected in ((fixed, "involuntary_hold"), (load_vocabularies(), "unknown")):
        rows = derive(facts, FoldConfig(timezone=TZ, vocabularies=vocabularies), keyring)
        (row,) = rows[T.INCIDENT_SUMMARY.name].values()
        assert row["cad_outcome"] == expected
