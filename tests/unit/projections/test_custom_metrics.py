"""County metrics in the outcome tables: hand-computed cells, the invariants, and the
adversary — no small cell derivable from county and built-in cells together."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.kernel.custom_fields import Definitions, parse_definitions
from projections import custom_metrics, reporting
from projections.areas import path_counts
from projections.releases import month_release
from tests.unit.projections.custom_adversary import custom_adversary
from tests.unit.projections.release_adversary import adversary

MONTH = date(2024, 3, 1)
DEFS = """
name: test-county
version: 3
fields:
  housing:
    type: enum
    values: [housed, sheltered, unsheltered]
    label: Housing status
    sources: [cad, intake]
metrics:
  - id: unsheltered_holds
    label: Involuntary holds among unsheltered people
    denominator: {housing: unsheltered}
    numerator: {housing: unsheltered, outcome: involuntary_hold}
  - id: co_housed
    label: People without housing among co-responder calls
    denominator: {co_responder: true}
    numerator: {co_responder: true, housing: [sheltered, unsheltered]}
"""


def defs() -> Definitions:
    return parse_definitions(DEFS, "county.yaml")


def call(precinct: str | None, outcome: str | None, co: bool, housing: str | None,
         sector: str | None = None, beat: str | None = None) -> dict[str, Any]:
    return {"sector": sector, "beat": beat,
        "received_at": datetime(2024, 3, 5, tzinfo=UTC), "call_category": "behavioral_health",
        "behavioral_health": True,
        "precinct": precinct, "district": None, "outcome": outcome, "co_responder": co,
        "referral_made": False, "connected_to_services": False,
        "custom": {} if housing is None else {"housing": housing},
    }


def release_cells(d: Definitions, calls: list[dict[str, Any]], seq: int = 1,
                  known: dict[str, list[int]] | None = None) -> Any:
    groups = [("precinct",), ("district",)]
    ext = custom_metrics.extension(d, calls, custom_metrics.release_groups, groups, 10)
    counts = path_counts(calls)
    return month_release(MONTH, counts, seq=seq, max_small=10, attribute_max=20, known_before=known,
                         extension=ext)


def test_cells_are_counted_as_defined_by_hand() -> None:
    # 50 calls: 15 unsheltered (6 of them holds), 28 housed (10 holds), 7 not recorded; 30
    # co-responder calls, 12 of them with unsheltered people
    calls = ([call("EAST", "involuntary_hold", True, "unsheltered")] * 6
             + [call("EAST", "no_enforcement", True, "unsheltered")] * 6
             + [call("WEST", "no_enforcement", False, "unsheltered")] * 3
             + [call("WEST", "involuntary_hold", False, "housed")] * 10
             + [call("WEST", "other", True, "housed")] * 18
             + [call("WEST", None, False, None)] * 7)
    counts = custom_metrics.metric_counts(defs(), calls)
    assert counts == {"unsheltered_holds": (6, 15), "co_housed": (12, 30)}
    table = reporting.outcome_table(calls, by=None, tz="UTC", small_cell_max=10, custom=defs())
    total = table["total"]
    # 6 holds of 15 is small: withheld, and so is what would give it away
    assert total["custom.unsheltered_holds"]["suppressed"]
    assert total["custom.co_housed"]["value"] == 12
    assert total["custom.co_housed"]["share"] == 0.4  # of the denominator, not of calls
    assert total["custom.co_housed.denominator"] == {"value": 30, "share": 0.6, "suppressed": False,
                                                   "measured": True}


def test_without_metrics_nothing_changes() -> None:
    calls = [call("EAST", "no_enforcement", True, "housed")] * 30 + [call("WEST", "other", False, None)] * 25
    empty = parse_definitions("name: x\nversion: 1\n", "x.yaml")
    plain = reporting.outcome_table(calls, by="area", tz="UTC", small_cell_max=10)
    assert reporting.outcome_table(calls, by="area", tz="UTC", small_cell_max=10, custom=empty) == plain
    with_metrics = reporting.outcome_table(calls, by="area", tz="UTC", small_cell_max=10, custom=defs())
    for group in [with_metrics["total"], *(r["metrics"] for r in with_metrics["rows"])]:
        assert not any(k.startswith("custom.") for k in plain["total"])
        assert {k: v for k, v in group.items() if not k.startswith("custom.")} in (
            [plain["total"], *(r["metrics"] for r in plain["rows"])])


def test_a_county_metric_naming_an_unmeasured_outcome_is_not_measured() -> None:
    calls = [call("EAST", "involuntary_hold", True, "unsheltered")] * 30
    table = reporting.outcome_table(calls, by=None, tz="UTC", small_cell_max=10, custom=defs(),
                                    unmeasured={"outcome.involuntary_hold": "no holds in this feed"})
    cell = table["total"]["custom.unsheltered_holds"]
    assert cell == {"value": None, "share": None, "suppressed": False, "measured": False,
                    "reason": "no holds in this feed"}
    assert table["total"]["custom.co_housed"]["measured"]


def test_subtracting_a_county_cell_from_a_builtin_one_is_prevented() -> None:
    # EAST: 14 holds, 12 of them unsheltered: "2 housed holds" must not follow
    calls = ([call("EAST", "involuntary_hold", False, "unsheltered")] * 12
             + [call("EAST", "involuntary_hold", False, "housed")] * 2
             + [call("EAST", "no_enforcement", False, "unsheltered")] * 20
             + [call("WEST", "no_enforcement", False, "housed")] * 40)
    rel = release_cells(defs(), calls)
    shown = {c: v for c, v in rel.table.shown().items() if v is not None}
    assert not custom_adversary(defs(), calls, shown)
    east = (("precinct", "EAST"), "custom.unsheltered_holds")
    holds = (("precinct", "EAST"), "outcome.involuntary_hold")
    assert east not in shown or holds not in shown


def test_release_records_carry_county_cells_with_their_shares() -> None:
    calls = ([call("EAST", "involuntary_hold", True, "unsheltered")] * 20
             + [call("EAST", "no_enforcement", True, "unsheltered")] * 30
             + [call("WEST", "no_enforcement", False, "housed")] * 40)
    rel = release_cells(defs(), calls)
    rec = {(r.area_kind, r.area, r.metric): r for r in rel.records}
    assert rec[("all", "all", "custom.unsheltered_holds")].value == 20
    assert rec[("all", "all", "custom.unsheltered_holds")].share == 0.4
    assert rec[("all", "all", "custom.unsheltered_holds.denominator")].share == round(50 / 90, 4)


calls_strategy = st.lists(
    st.builds(
        call,
        st.sampled_from(["EAST", "WEST", "NORTH"]),
        st.sampled_from(["involuntary_hold", "no_enforcement", None]),
        st.booleans(),
        st.sampled_from(["housed", "sheltered", "unsheltered", None]),
    ),
    max_size=70,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(calls_strategy)
def test_no_small_cell_is_derivable_from_county_and_builtin_cells(calls: list[dict[str, Any]]) -> None:
    d = defs()
    rel = release_cells(d, calls)
    shown = {c: v for c, v in rel.table.shown().items() if v is not None}
    assert not [f"{c}={v}" for c, v in shown.items() if 1 <= v <= 10]
    assert custom_adversary(d, calls, shown) == []


#: Seattle-style calls: beats within sectors within precincts, some without a sector or beat
SECTORS = {"EAST": ["E", "G"], "WEST": ["K"]}
located_calls = st.lists(
    st.sampled_from(["EAST", "WEST"]).flatmap(lambda p: st.builds(
        call, st.just(p), st.sampled_from(["involuntary_hold", "no_enforcement", None]), st.booleans(),
        st.sampled_from(["housed", "unsheltered", None]), st.sampled_from([*SECTORS[p], None]),
        st.sampled_from(["1", "2", None]),
    )).map(lambda c: {**c, "beat": c["sector"] + c["beat"] if c["sector"] and c["beat"] else c["beat"]}),
    max_size=60,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(located_calls)
def test_county_cells_with_sectors_and_beats_give_nothing_small_away(calls: list[dict[str, Any]]) -> None:
    # a release with county cells (jurisdiction, precincts, districts) and the built-in cells of
    # sectors and beats: neither adversary derives a small cell
    d = defs()
    rel = release_cells(d, calls)
    shown = {c: v for c, v in rel.table.shown().items() if v is not None}
    assert any(c[0][0] == "beat" for c in rel.table.published) or not any(c.get("beat") for c in calls)
    assert not [f"{c}={v}" for c, v in shown.items() if 1 <= v <= 10]
    assert custom_adversary(d, calls, shown) == []
    assert adversary([rel], [path_counts(calls)]) == []


@given(calls_strategy)
def test_numerator_within_denominator_and_counts_conserved(calls: list[dict[str, Any]]) -> None:
    d = defs()
    counts = custom_metrics.metric_counts(d, calls)
    for n, den in counts.values():
        assert 0 <= n <= den <= len(calls)
    # the areas' cells add up to the jurisdiction's, before any suppression
    ext = custom_metrics.extension(d, calls, custom_metrics.release_groups, [("precinct",)], 10)
    assert ext is not None
    for m in custom_metrics.metric_names(d):
        areas = sum(v for (g, name), v in ext.values.items() if name == m and g[0] == "precinct")
        assert areas == ext.values.get((("all", "all"), m), 0)


def test_the_adversary_finds_what_an_unprotected_table_gives_away() -> None:
    # the adversary is not blind: publishing every true cell gives "2 holds of people not
    # unsheltered" away (14 holds, 12 of them unsheltered)
    calls = ([call("EAST", "involuntary_hold", False, "unsheltered")] * 12
             + [call("EAST", "involuntary_hold", False, "housed")] * 2
             + [call("EAST", "no_enforcement", False, "unsheltered")] * 20)
    rel = release_cells(defs(), calls)
    everything = {c: rel.table.values[c] for c in rel.table.published}
    found = custom_adversary(defs(), calls, everything)
    assert "('precinct', 'EAST'): {'outcome': ['involuntary_hold'], 'housing': ['<missing>', 'housed', " \
        "'sheltered']} = 2" in found




def test_one_more_unsheltered_hold_is_not_told_by_the_next_release() -> None:
    # release 1: 20 unsheltered holds of 35 in EAST; a late fact adds one
    base = ([call("EAST", "involuntary_hold", False, "unsheltered")] * 20
            + [call("EAST", "no_enforcement", False, "unsheltered")] * 15
            + [call("WEST", "no_enforcement", False, "housed")] * 40)
    first = release_cells(defs(), base)
    later = [*base, call("EAST", "involuntary_hold", False, "unsheltered")]
    second = release_cells(defs(), later, seq=2, known=first.known)
    one, two = first.table.shown(), second.table.shown()
    for cell, value in two.items():
        before = one.get(cell)
        if value is not None and before is not None:
            assert not 1 <= abs(value - before) <= 10, (cell, before, value)
    east = (("precinct", "EAST"), "custom.unsheltered_holds")
    assert one[east] == 20 and two[east] is None  # withheld rather than "one more"


def test_definitions_changed_under_the_same_version_are_refused() -> None:
    from projections.publisher import DefinitionsVersionError, check_definitions_version

    d = defs()
    check_definitions_version(None, d)
    check_definitions_version({"definitions": d.label, "digest": d.digest}, d)
    check_definitions_version({"definitions": "test-county@2", "digest": "sha256:other"}, d)
    with pytest.raises(DefinitionsVersionError, match="changed but their version is still 3"):
        check_definitions_version({"definitions": d.label, "digest": "sha256:other"}, d)
