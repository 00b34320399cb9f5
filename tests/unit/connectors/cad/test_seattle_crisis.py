"""Seattle "Crisis Data" in its published layout: one template per person per contact, one
row per disposition. The hand-written sample (``tests/data/cad/seattle_crisis``, see
PROVENANCE.md) has 12 rows; the expected numbers were counted by hand from it:

====  ===================  ========  ==========================================  ===========
id    occurred (local)     precinct  dispositions                                outcome
====  ===================  ========  ==========================================  ===========
1001  2024-03-02 10:15     NORTH     Resources Declined                          no enforcement
1002  2024-03-05 23:00     NORTH     Emergent Detention/ITA + Mobile Crisis Team involuntary hold (+ referral)
1003  2024-03-09 14:30     SOUTH     Subject Arrested + Crisis Clinic            arrest (+ referral)
1004  2024-03-12 08:00     SOUTH     Voluntary Committal (use of force: Y)       voluntary transport
1005  2024-03-20 18:45     EAST      Unable to Contact                           other
1006  2024-03-25 09:10     EAST      DMHP Referral                               no enforcement (referral)
1007  2024-04-01 01:00     WEST      Shelter Transport                           no enforcement — April
1008  2024-03-31 23:30     WEST      Unlisted Test Disposition (unknown)         other — March, local time
1009  2024-03-15 16:00     NORTH     Resources Declined                          no enforcement
1010  2024-03-15 16:00     NORTH     Emergent Detention/ITA                      involuntary hold
====  ===================  ========  ==========================================  ===========

1009 and 1010 are two people on one contact: two templates, two crisis contacts.
March: 9 contacts — no enforcement 3, involuntary hold 2, arrest 1, voluntary transport 1,
other 2; referral made 3 (1002, 1003, 1006); NORTH 4, SOUTH 2, EAST 2, WEST 1. April: 1.
"""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

from connectors.cad.ingest import ingest_files
from connectors.cad.profile import load_profile
from connectors.core.memory import MemoryLog
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.settings import PROJECT_ROOT
from hub.kernel.vocabulary import load_vocabularies
from projections import reporting
from projections import tables as T
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.fold import derive
from projections.store import vocabulary_meta

SAMPLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle_crisis" / "crisis-data-sample.csv"
TZ = "America/Los_Angeles"


def ingested() -> tuple[Any, MemoryLog]:
    log = MemoryLog()
    counts = asyncio.run(
        ingest_files([SAMPLE], load_profile("seattle_crisis"), log, DeadLetterSealer(bytes(32)))
    )
    return counts, log


def incidents(log: MemoryLog) -> dict[str, dict[str, Any]]:
    cfg = FoldConfig(timezone=TZ, vocabularies=load_vocabularies())
    rows = derive([fact_from_envelope(e) for e in log.events], cfg)[T.INCIDENT_SUMMARY.name]
    return {r["incident_id"]: r for r in rows.values()}


def test_every_row_is_read_and_each_disposition_is_its_own_fact() -> None:
    counts, log = ingested()
    assert counts.read == 12 and counts.dead_lettered == 0 and counts.balanced()
    assert counts.unknown_dispositions == 1  # "Unlisted Test Disposition"
    assert len(log.of_type("cad.call.received")) == 10  # one call per template
    assert len(log.of_type("cad.crisis.template")) == 10
    assert len(log.of_type("cad.call.disposition")) == 12  # every row's disposition
    assert log.of_type("cad.call.revised") == []  # a second disposition is not a revision
    again = asyncio.run(
        ingest_files([SAMPLE], load_profile("seattle_crisis"), log, DeadLetterSealer(bytes(32)))
    )
    assert again.events_appended == 0


def test_templates_are_crisis_contacts_with_their_most_severe_disposition() -> None:
    _, log = ingested()
    rows = incidents(log)
    assert set(rows) == {f"SPD-CRISIS:{n}" for n in range(1001, 1011)}
    assert all(r["behavioral_health"] for r in rows.values())  # the template is the rule
    outcome = {i.split(":")[1]: r["outcome"] for i, r in rows.items()}
    assert outcome == {
        "1001": "no_enforcement",
        "1002": "involuntary_hold",
        "1003": "arrest_or_citation",
        "1004": "voluntary_transport",
        "1005": "other",
        "1006": "no_enforcement",
        "1007": "no_enforcement",
        "1008": "other",
        "1009": "no_enforcement",
        "1010": "involuntary_hold",
    }
    assert {i for i, r in rows.items() if r["referral_made"]} == {
        "SPD-CRISIS:1002",
        "SPD-CRISIS:1003",
        "SPD-CRISIS:1006",
    }
    # "Use of Force Indicator" Y: force of a type the source does not say; N: none
    force = {i.split(":")[1]: r["use_of_force"] for i, r in rows.items()}
    assert force["1004"] == "other" and {v for k, v in force.items() if k != "1004"} == {"none"}
    assert rows["SPD-CRISIS:1003"]["time_on_scene_seconds"] is None  # no clear time: none


def test_the_report_matches_the_hand_count() -> None:
    _, log = ingested()
    vocabularies = load_vocabularies()
    bh = [r for r in incidents(log).values() if r["behavioral_health"]]
    meta = vocabulary_meta(vocabularies)
    unmeasured = reporting.unmeasured_metrics({r["vocabulary"] for r in bh}, meta["vocabularies"])
    by_month = reporting.outcome_table(bh, by="month", tz=TZ, small_cell_max=0, unmeasured=unmeasured)
    rows = {r["group"]: r["metrics"] for r in by_month["rows"]}
    march = {m: c["value"] for m, c in rows["2024-03"].items()}
    assert march["calls"] == 9
    assert (
        march["outcome.no_enforcement"],
        march["outcome.involuntary_hold"],
        march["outcome.arrest_or_citation"],
        march["outcome.voluntary_transport"],
        march["outcome.other"],
    ) == (3, 2, 1, 1, 2)
    assert march["referral_made"] == 3
    assert rows["2024-04"]["calls"]["value"] == 1
    # what Crisis Data cannot express is marked, never 0
    assert rows["2024-03"]["outcome.emergency_department"]["measured"] is False
    assert rows["2024-03"]["co_responder"]["measured"] is False
    by_area = reporting.outcome_table(
        [r for r in bh if r["received_at"].astimezone(ZoneInfo(TZ)).month == 3],
        by="area",
        tz=TZ,
        small_cell_max=0,
        unmeasured=unmeasured,
    )
    areas = {r["group"]: r["metrics"]["calls"]["value"] for r in by_area["rows"]}
    assert areas == {"NORTH": 4, "SOUTH": 2, "EAST": 2, "WEST": 1}
    notes = reporting.footnotes({r["vocabulary"] for r in bh}, meta["vocabularies"])
    assert any("voluntary committal" in n for n in notes)
