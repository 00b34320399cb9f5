"""Areas of need: sector and beat grains added to a month's table without changing its
precinct / district cells, calls for service and rates — against hand-computed tables and an
adversary that knows the geography (beat ⊂ sector ⊂ precinct) and every release."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.areas import (
    ALL_CALLS,
    area_path,
    nesting,
    nesting_pairs,
    path_counts,
    present_kinds,
    rate,
    rates,
)
from projections.releases import month_release
from tests.unit.projections.release_adversary import adversary
from tests.unit.projections.test_releases import MAX, MONTH, attack, counts_of, incident, located, releases_of


def call(precinct: str | None, sector: str | None, beat: str | None, *, bh: bool = True,
         outcome: str | None = "no_enforcement", **flags: bool) -> dict[str, Any]:
    return {"received_at": MONTH, "call_category": "crisis", "behavioral_health": bh, "precinct": precinct,
            "district": None, "sector": sector, "beat": beat, "outcome": outcome,
            "referral_made": False, "connected_to_services": False, "co_responder": False, **flags}


def shown(rel: Any) -> dict[tuple[str, str, str], Any]:
    return {(r.area_kind, r.area, r.metric): r.value for r in rel.records}


def test_a_call_is_in_its_precinct_sector_and_beat() -> None:
    assert area_path(call("EAST", "G", "G1")) == ("EAST", "unknown", "G", "G1")
    assert area_path({"district": "NORTH"}) == ("unknown", "NORTH", "unknown", "unknown")
    # a feed without sectors or beats publishes no such grain
    assert present_kinds([("unknown", "NORTH", "unknown", "unknown")]) == ("precinct", "district")
    assert present_kinds([("EAST", "unknown", "G", "G1")]) == ("precinct", "district", "sector", "beat")


def test_a_beat_in_two_sectors_is_split_not_assigned() -> None:
    paths = [("EAST", "unknown", "G", "G1"), ("EAST", "unknown", "K", "G1"), ("EAST", "unknown", "G", "G2")]
    areas = {("precinct", "EAST"), ("sector", "G"), ("sector", "K"), ("beat", "G1"), ("beat", "G2")}
    cells = nesting(nesting_pairs(paths, ("precinct", "sector", "beat")), areas)
    assert cells[("sector", "K", "beat", "G1")] == ("sector", "K")  # K holds G1 only
    assert cells[("sector", "G", "beat", "G1")] == ("sector>beat", "G>G1")  # G1 is in G and K
    assert cells[("sector", "G", "beat", "G2")] == ("beat", "G2")
    # calls without a beat: nobody knows which sector's they are, so unknown pairs with each
    with_unknown = nesting(nesting_pairs([*paths, ("EAST", "unknown", "G", "unknown")],
                                         ("precinct", "sector", "beat")), areas | {("beat", "unknown")})
    assert with_unknown[("sector", "K", "beat", "unknown")] == ("sector>beat", "K>unknown")
    assert with_unknown[("sector", "K", "beat", "G1")] == ("sector>beat", "K>G1")  # K holds more now


def test_hand_computed_beats_sectors_and_rates() -> None:
    # EAST: sector E (beats E1: 30 BH + 70 other calls, E2: 25 BH), sector G (G1: 4 BH, G2: 20 BH);
    # WEST: sector K (K1: 40 BH). Every BH call ended with no enforcement.
    rows = ([call("EAST", "E", "E1")] * 30 + [call("EAST", "E", "E1", bh=False)] * 70
            + [call("EAST", "E", "E2")] * 25 + [call("EAST", "G", "G1")] * 4 + [call("EAST", "G", "G2")] * 20
            + [call("WEST", "K", "K1")] * 40)
    population = {("beat", "E1"): 2000, ("precinct", "EAST"): 40000, ("beat", "G1"): 500}
    rel = month_release(MONTH, path_counts(rows), seq=1, max_small=MAX, attribute_max=20,
                        population=population)
    s = shown(rel)
    # counts by hand: G1's 4 calls are withheld, and G2 with it (G = 24 is shown: G1 = G - G2)
    assert s[("beat", "E1", "calls")] == 30 and s[("beat", "E2", "calls")] == 25
    assert s[("beat", "G1", "calls")] is None and s[("beat", "G2", "calls")] is None
    assert s[("sector", "G", "calls")] == 24 and s[("sector", "E", "calls")] == 55
    assert s[("sector", "K", "calls")] == 40 and s[("beat", "K1", "calls")] == 40
    assert s[("precinct", "EAST", "calls")] == 79 and s[("all", "all", "calls")] == 119
    # calls for service: 100 in E1, 55 + 70 = 125 in E, 149 in EAST, 189 in all
    assert s[("beat", "E1", ALL_CALLS)] == 100 and s[("sector", "E", ALL_CALLS)] == 125
    assert s[("precinct", "EAST", ALL_CALLS)] == 149 and s[("all", "all", ALL_CALLS)] == 189
    records = {(r.area_kind, r.area, r.metric): r for r in rel.records}
    e1 = records[("beat", "E1", "calls")]
    assert e1.rate_per_1000_calls == 300.0  # 30 of 100 calls for service
    assert e1.rate_per_1000_residents == 15.0  # 30 per 2,000 residents
    east = records[("precinct", "EAST", "calls")]
    assert east.rate_per_1000_calls == round(79_000 / 149, 1) == 530.2
    assert east.rate_per_1000_residents == round(79_000 / 40_000, 1) == 2.0
    g1 = records[("beat", "G1", "calls")]  # a withheld count has no rate, population or not
    assert g1.rate_per_1000_calls is None and g1.rate_per_1000_residents is None
    assert records[("beat", "E1", ALL_CALLS)].rate_per_1000_calls is None
    assert adversary([rel], [path_counts(rows)]) == []


def test_the_grains_change_no_precinct_or_district_cell() -> None:
    rows = [call("EAST", "G", "G1")] * 4 + [call("EAST", "G", "G2")] * 30 + [call("WEST", "K", "K1")] * 12
    flat = [{**r, "sector": None, "beat": None} for r in rows]
    fine = month_release(MONTH, path_counts(rows), seq=1, max_small=MAX, attribute_max=20)
    coarse = month_release(MONTH, path_counts(flat), seq=1, max_small=MAX, attribute_max=20)
    keep = ("all", "precinct", "district")
    before = {k: v for k, v in shown(coarse).items() if k[2] != ALL_CALLS}  # calls for service are new
    assert {k: v for k, v in shown(fine).items() if k[0] in keep and k[2] != ALL_CALLS} == before
    assert not any(r.area_kind in ("sector", "beat") for r in coarse.records)


def test_rates_are_made_of_shown_values_only() -> None:
    assert rate(None, 100) is None and rate(5, None) is None and rate(5, 0) is None
    assert rate(12, 400) == 30.0
    a = ("beat", "B1")
    out = rates({(a, "calls"): 40, (a, ALL_CALLS): None, (a, "outcome.other"): None}, {a: 8000})
    assert out[(a, "calls")] == (None, 5.0)  # calls for service withheld: no rate per call
    assert out[(a, "outcome.other")] == (None, None)


@settings(max_examples=int(os.environ.get("AREAS_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.tuples(st.one_of(located, incident), st.integers(1, 14)), min_size=1, max_size=7),
    st.lists(st.tuples(st.booleans(), st.one_of(located, incident), st.integers(1, 12)), max_size=2),
)
def test_adversary_across_beats_sectors_precincts_and_releases_derives_nothing_small(groups, changes) -> None:  # type: ignore[no-untyped-def]
    versions = [[i for i, n in groups for _ in range(n)]]
    for add, inc, n in changes:  # late facts and revisions: calls added or taken away
        current = list(versions[-1])
        if add:
            current += [inc] * n
        else:
            del current[-n:]
        versions.append(current)
    assert attack(versions) == []


def test_a_change_the_coarse_cells_alone_would_tell_withholds_coarse_cells_too() -> None:
    # release 1 shows 28 calls without a sector; then 9 calls go (7 of EAST's without a sector,
    # EAST's 2 in sector E): all = 21 and EAST = 0 would give "sector unknown = 21" (7 fewer)
    # even with every sector withheld, so a coarse cell is withheld too
    west = ("WEST", None, None, frozenset({"referral_made", "connected_to_services"}), None, "1", True)
    east_e = ("EAST", None, "involuntary_hold", frozenset({"referral_made"}), "E", "1", True)
    first = ([("WEST", "D1", "involuntary_hold", frozenset())] * 13 + [west] * 8
             + [("EAST", "D1", "involuntary_hold", frozenset())] * 7 + [east_e] * 2)
    versions = [first, first[:-9], first[:-17]]
    assert attack(versions) == []


def test_months_are_separate_tables() -> None:
    # two months of the same areas: nothing adds months up, so each month is attacked alone,
    # and a month's releases never carry another month's cells
    march = [("EAST", None, "other", frozenset(), "G", "1", True)] * 15
    april = [*march, ("EAST", None, "other", frozenset(), "G", "2", True)]
    (m1,) = releases_of([march])
    a1 = month_release(date(2024, 4, 1), counts_of(april), seq=1, max_small=MAX, attribute_max=20)
    assert {r.period for r in m1.records} == {"2024-03"} and {r.period for r in a1.records} == {"2024-04"}
    assert not set(m1.known) & set(a1.known)
    assert adversary([a1], [counts_of(april)]) == []


def test_the_adversary_subtracts_across_area_levels() -> None:
    # G = G1 + G2: publishing G2 next to G tells G1's 4 calls (a naive release per grain)
    rows = [call("EAST", "G", "G1")] * 4 + [call("EAST", "G", "G2")] * 30 + [call("WEST", "K", "K1")] * 40
    rel = month_release(MONTH, path_counts(rows), seq=1, max_small=MAX, attribute_max=20)
    naive = replace(rel, records=tuple(
        r.model_copy(update={"value": 30, "suppressed": False})
        if (r.area_kind, r.area, r.metric) == ("beat", "G2", "calls") else r for r in rel.records))
    assert adversary([rel], [path_counts(rows)]) == []
    assert any("(('beat', 'G1'), 'calls')" in f for f in adversary([naive], [path_counts(rows)]))


def test_a_grain_that_appears_in_a_later_release_protects_its_unknown_cell() -> None:
    # found by Hypothesis: release 1 has no beats, so "beat unknown" = all 13 calls (analysts
    # can tell); release 2 withdraws 2 calls; release 3 adds a call with a beat and shows
    # "beat unknown = 11": a change of 2 since release 1
    west = ("WEST", None, None, frozenset(), "K", None, False)
    first = [west] * 13
    second = first[:-2]
    third = [*second, ("EAST", None, None, frozenset(), "E", "1", False)]
    assert attack([first, second, third]) == []
