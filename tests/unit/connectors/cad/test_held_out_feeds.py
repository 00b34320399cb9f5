"""Held-out feeds in the New Orleans and San Francisco layouts, built by hand, through the
mappers, the projections' folds (with the bundled vocabularies) and the report tables —
checked cell by cell against counts made by hand from the rows below.

New Orleans (Calls for Service; America/Chicago; BH rule: initial or final type):

- N1 MENTAL PATIENT, created 03/01/2024 10:00 AM, arrived 10:15, closed 11:00, NAT, district 1:
  BH, no enforcement, response 900 s, on scene 2700 s;
- N2 SUICIDE, 03/02/2024 01:00 PM, 01:20, 02:00, ARR, district 1: BH, arrest, 1200 s, 2400 s;
- N3 DISTURBANCE (both types), NAT, district 2: not BH;
- N4 MENTAL PATIENT then DISTURBANCE, 03/04/2024 08:00 PM, no arrival, closed 09:00, UNF,
  district 2: BH (initial type), other (unfounded is a process code), no response time;
- N5 MENTAL PATIENT, 03/05/2024 08:00 AM, 08:10, 08:30, GOA, district 2: BH, other (gone on
  arrival), 600 s, 1200 s;
- N6 disposition text VOID: excluded.

BH calls 4: no enforcement 1, arrest 1, other 2; response times 900, 1200, 600 (median 900);
on scene 2700, 2400, 1200 (median 2400); district 1: 2, district 2: 2.

San Francisco (dispatched calls; America/Los_Angeles; BH rule adds "well being check"):

- S1 WELL BEING CHECK, received 2024-05-02 10:00, on scene 10:20, closed 11:00, HAN, MISSION:
  BH, no enforcement, 1200 s, scene 2400 s;
- S2 MENTALLY DISTURBED, 2024-05-03 09:00, 09:05, 10:05, 5150, MISSION: BH, hold, 300 s, 3600 s;
- S3 MENTALLY DISTURBED, 2024-05-04 12:00, 12:30, 13:00, SFD, BAYVIEW: BH, ED, 1800 s, 1800 s;
- S4 MENTALLY DISTURBED, 2024-05-31 23:30 (May, local), no times, NOM, BAYVIEW: BH, other (no
  merit is a process code);
- S5 TRAFFIC COLLISION, CIT, MISSION: not BH;
- S6 disposition DUP: excluded.

BH calls 4 (all in May): no enforcement 1, hold 1, ED 1, other 1; response 1200, 300, 1800
(median 1200); on scene 2400, 3600, 1800 (median 2400); MISSION 2, BAYVIEW 2.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from connectors.cad.csvfile import parse_csv
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.core.records import Exclusion, Mapped
from hub.kernel.vocabulary import load_vocabularies
from projections import reporting
from projections import tables as T
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive
from projections.store import vocabulary_meta


def csv_of(profile_name: str, rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    columns = load_profile(profile_name).columns
    w.writerow(columns)
    for row in rows:
        w.writerow([row.get(c, "") for c in columns])
    return buf.getvalue()


def report_of(profile_name: str, rows: list[dict[str, str]], tz: str) -> tuple[dict[str, Any], int]:
    """(the operator's report with no small-cell rule, how many rows were excluded)."""
    profile = load_profile(profile_name)
    mapper = CadMapper(profile)
    events, excluded = [], 0
    for rec in parse_csv(csv_of(profile_name, rows), profile, "held-out.csv"):
        result = mapper.map(rec)
        if isinstance(result, Exclusion):
            excluded += 1
            continue
        assert isinstance(result, Mapped), result
        events += result.events
    vocabularies = load_vocabularies()
    derived = derive(
        [fact_from_envelope(e) for e in events], FoldConfig(timezone=tz, vocabularies=vocabularies)
    )
    bh = [r for r in derived[T.INCIDENT_SUMMARY.name].values() if r["behavioral_health"]]
    meta = vocabulary_meta(vocabularies)
    unmeasured = reporting.unmeasured_metrics({r["vocabulary"] for r in bh}, meta["vocabularies"])
    doc = reporting.report_document(
        table=reporting.outcome_table(bh, by="area", tz=tz, small_cell_max=0, unmeasured=unmeasured),
        repeat=reporting.repeat_table([], 0),
        times=reporting.response_times(bh, 0, unmeasured),
        funnel=reporting.referral_funnel([], 0),
        by="area",
        small_cell_max=0,
        vocabulary=meta,
        unmeasured=unmeasured,
    )
    return doc, excluded


def nola(
    n: str, initial: str, final: str, created: str, arrived: str, closed: str, disp: str, district: str
) -> dict[str, str]:
    return {
        "NOPD_Item": n,
        "TypeText": final,
        "InitialTypeText": initial,
        "Priority": "2A",
        "TimeCreate": created,
        "TimeArrive": arrived,
        "TimeClosed": closed,
        "Disposition": disp,
        "DispositionText": "",
        "SelfInitiated": "N",
        "PoliceDistrict": district,
        "Beat": f"{district}X01",
    }


NOLA_ROWS = [
    nola(
        "N1",
        "MENTAL PATIENT",
        "MENTAL PATIENT",
        "03/01/2024 10:00:00 AM",
        "03/01/2024 10:15:00 AM",
        "03/01/2024 11:00:00 AM",
        "NAT",
        "1",
    ),
    nola(
        "N2",
        "SUICIDE",
        "SUICIDE",
        "03/02/2024 01:00:00 PM",
        "03/02/2024 01:20:00 PM",
        "03/02/2024 02:00:00 PM",
        "ARR",
        "1",
    ),
    nola(
        "N3",
        "DISTURBANCE",
        "DISTURBANCE",
        "03/03/2024 09:00:00 AM",
        "03/03/2024 09:10:00 AM",
        "03/03/2024 09:40:00 AM",
        "NAT",
        "2",
    ),
    nola(
        "N4",
        "MENTAL PATIENT",
        "DISTURBANCE",
        "03/04/2024 08:00:00 PM",
        "",
        "03/04/2024 09:00:00 PM",
        "UNF",
        "2",
    ),
    nola(
        "N5",
        "MENTAL PATIENT",
        "MENTAL PATIENT",
        "03/05/2024 08:00:00 AM",
        "03/05/2024 08:10:00 AM",
        "03/05/2024 08:30:00 AM",
        "GOA",
        "2",
    ),
    {
        **nola("N6", "MENTAL PATIENT", "MENTAL PATIENT", "03/06/2024 08:00:00 AM", "", "", "VOI", "2"),
        "DispositionText": "VOID",
    },
]


def sf(
    n: str, kind: str, received: str, onscene: str, close: str, disp: str, district: str
) -> dict[str, str]:
    return {
        "cad_number": n,
        "received_datetime": received,
        "onscene_datetime": onscene,
        "close_datetime": close,
        "call_type_original_desc": kind,
        "call_type_final_desc": kind,
        "priority_final": "B",
        "disposition": disp,
        "onview_flag": "N",
        "police_district": district,
    }


SF_ROWS = [
    sf(
        "S1",
        "WELL BEING CHECK",
        "2024-05-02T10:00:00.000",
        "2024-05-02T10:20:00.000",
        "2024-05-02T11:00:00.000",
        "HAN",
        "MISSION",
    ),
    sf(
        "S2",
        "MENTALLY DISTURBED",
        "2024-05-03T09:00:00.000",
        "2024-05-03T09:05:00.000",
        "2024-05-03T10:05:00.000",
        "5150",
        "MISSION",
    ),
    sf(
        "S3",
        "MENTALLY DISTURBED",
        "2024-05-04T12:00:00.000",
        "2024-05-04T12:30:00.000",
        "2024-05-04T13:00:00.000",
        "SFD",
        "BAYVIEW",
    ),
    sf("S4", "MENTALLY DISTURBED", "2024-05-31T23:30:00.000", "", "", "NOM", "BAYVIEW"),
    sf(
        "S5",
        "TRAFFIC COLLISION",
        "2024-05-05T08:00:00.000",
        "2024-05-05T08:10:00.000",
        "2024-05-05T08:40:00.000",
        "CIT",
        "MISSION",
    ),
    sf("S6", "MENTALLY DISTURBED", "2024-05-06T08:00:00.000", "", "", "DUP", "MISSION"),
]


def values(doc: dict[str, Any]) -> dict[str, Any]:
    total = doc["outcomes"]["total"]
    return {m: c["value"] for m, c in total.items()}


def test_new_orleans_held_out_feed_matches_the_hand_count() -> None:
    doc, excluded = report_of("new_orleans", NOLA_ROWS, "America/Chicago")
    assert excluded == 1
    v = values(doc)
    assert (v["calls"], v["outcome.no_enforcement"], v["outcome.arrest_or_citation"], v["outcome.other"]) == (
        4,
        1,
        1,
        2,
    )
    times = doc["response_times"]
    assert (times["response_seconds"]["n"], times["response_seconds"]["median"]) == (3, 900.0)
    assert (times["time_on_scene_seconds"]["n"], times["time_on_scene_seconds"]["median"]) == (3, 2400.0)
    areas = {(r["group_kind"], r["group"]): r["metrics"]["calls"]["value"] for r in doc["outcomes"]["rows"]}
    assert areas == {("district", "1"): 2, ("district", "2"): 2}
    # NOPD's dispositions cannot say transport, hold or ED: marked, never 0
    assert doc["headline"]["voluntary_transport"]["measured"] is False
    assert doc["headline"]["involuntary_hold"]["measured"] is False


def test_san_francisco_held_out_feed_matches_the_hand_count() -> None:
    doc, excluded = report_of("san_francisco", SF_ROWS, "America/Los_Angeles")
    assert excluded == 1
    v = values(doc)
    assert (
        v["calls"],
        v["outcome.no_enforcement"],
        v["outcome.involuntary_hold"],
        v["outcome.emergency_department"],
        v["outcome.other"],
    ) == (4, 1, 1, 1, 1)
    assert v["outcome.arrest_or_citation"] == 0 and doc["headline"]["enforcement"]["measured"] is True
    times = doc["response_times"]
    assert (times["response_seconds"]["n"], times["response_seconds"]["median"]) == (3, 1200.0)
    assert (times["time_on_scene_seconds"]["n"], times["time_on_scene_seconds"]["median"]) == (3, 2400.0)
    areas = {(r["group_kind"], r["group"]): r["metrics"]["calls"]["value"] for r in doc["outcomes"]["rows"]}
    assert areas == {("district", "MISSION"): 2, ("district", "BAYVIEW"): 2}
