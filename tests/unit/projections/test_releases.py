"""Outcome releases against an adversary: given every release analysts can obtain (every
area grain, every release of every month), nothing from 1 to 10 can be derived — neither a
cell, nor the change of a cell between two releases ("one more hold in EAST").

The adversary knows the tables' equations (areas add up to the jurisdiction, outcomes to the
calls with an outcome, flags and their complements to the calls), every shown value of every
release, and subtracts releases of the same month from each other.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.areas import path_counts
from projections.counts import FLAG_METRICS, OUTCOME_METRICS
from projections.releases import (
    MonthRelease,
    month_closed,
    month_release,
    parse_cell_key,
    release_document,
    with_extras,
)
from tests.unit.projections.release_adversary import adversary

MONTH = date(2024, 3, 1)
MAX = 10

# an incident: (precinct, district, primary outcome or None, flags); optionally followed by
# (sector, beat, behavioral health) — a call that is not behavioral-health counts in the
# calls for service only
incident = st.tuples(
    st.sampled_from(["EAST", "WEST", None]),
    st.sampled_from(["D1", "D2", None]),
    st.sampled_from([None, *(m.removeprefix("outcome.") for m in OUTCOME_METRICS)]),
    st.frozensets(st.sampled_from(FLAG_METRICS)),
)
# Seattle-style geography: beats within sectors within precincts (a beat "K9" sometimes
# miscoded under another sector, and calls without a sector or beat)
SECTORS = {"EAST": ["E", "G"], "WEST": ["K", "M"]}
located = st.sampled_from(["EAST", "WEST"]).flatmap(
    lambda p: st.tuples(
        st.just(p),
        st.just(None),
        st.sampled_from([None, *(m.removeprefix("outcome.") for m in OUTCOME_METRICS)]),
        st.frozensets(st.sampled_from(FLAG_METRICS)),
        st.sampled_from([*SECTORS[p], None]),
        st.sampled_from(["1", "2", "9", None]),
        st.booleans(),
    )
)


def row_of(inc: tuple) -> dict:  # type: ignore[type-arg]
    precinct, district, outcome, flags, *rest = inc
    sector, beat, bh = rest if rest else (None, None, True)
    if sector and beat:
        beat = ("K" if beat == "9" else sector) + beat
    return {"received_at": MONTH, "call_category": "crisis", "behavioral_health": bh,
            "precinct": precinct, "district": district, "sector": sector, "beat": beat,
            "outcome": outcome, **{f: f in flags for f in FLAG_METRICS}}


def counts_of(incidents: list[tuple]) -> dict:  # type: ignore[type-arg]
    """(area path, metric) counts, as the publisher reads them (projections.areas.path_counts)."""
    return path_counts(row_of(i) for i in incidents)


def releases_of(versions: list[list[tuple]]) -> list[MonthRelease]:  # type: ignore[type-arg]
    """Release every version of the month in turn, carrying what analysts knew."""
    out: list[MonthRelease] = []
    known: dict[str, list[int]] | None = None
    for seq, incidents in enumerate(versions, 1):
        rel = month_release(
            MONTH, counts_of(incidents), seq=seq, max_small=MAX, attribute_max=20, known_before=known
        )
        out.append(rel)
        known = rel.known
    return out


def attack(versions: list[list[tuple]]) -> list[str]:  # type: ignore[type-arg]
    return adversary(releases_of(versions), [counts_of(v) for v in versions])


def test_a_month_is_released_once_its_lateness_window_passed() -> None:
    tz, late = "America/Los_Angeles", timedelta(days=7)
    assert not month_closed(MONTH, datetime(2024, 4, 7, 12, tzinfo=UTC), tz, late)
    assert not month_closed(MONTH, datetime(2024, 4, 8, 6, 59, tzinfo=UTC), tz, late)  # 23:59 local
    assert month_closed(MONTH, datetime(2024, 4, 8, 7, 0, tzinfo=UTC), tz, late)  # April 8, 00:00 local


def test_one_more_hold_is_not_told_by_the_next_release() -> None:
    # 30 calls in EAST, 12 holds; a late fact adds one hold: 31 calls, 13 holds
    base = [("EAST", "D1", "no_enforcement", frozenset())] * 18 + [
        ("EAST", "D1", "involuntary_hold", frozenset())
    ] * 12
    later = [*base, ("EAST", "D1", "involuntary_hold", frozenset())]
    first, second = releases_of([base, later])
    shown1 = {(r.area_kind, r.area, r.metric): r.value for r in first.records}
    shown2 = {(r.area_kind, r.area, r.metric): r.value for r in second.records}
    assert shown1[("precinct", "EAST", "outcome.involuntary_hold")] == 12
    assert shown2[("precinct", "EAST", "outcome.involuntary_hold")] is None  # withheld, not 13
    assert shown2[("all", "all", "calls")] is None  # 30 -> 31 would tell one more call
    assert second.release == "2024-03.r2" and all(r.release == "2024-03.r2" for r in second.records)
    assert adversary([first, second], [counts_of(base), counts_of(later)]) == []


def test_zero_cells_next_to_a_small_total_do_not_disclose_the_whole_group() -> None:
    # a month where all 14 BH calls ended "other": showing 14 next to zeros tells it of everyone
    (rel,) = releases_of([[("EAST", "D1", "other", frozenset())] * 14])
    shown = {(r.area_kind, r.area, r.metric): r.value for r in rel.records}
    assert shown[("all", "all", "outcome.other")] is None
    assert adversary([rel], [counts_of([("EAST", "D1", "other", frozenset())] * 14)]) == []


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    st.lists(st.tuples(incident, st.integers(1, 14)), min_size=1, max_size=6),
    st.lists(st.tuples(st.booleans(), incident, st.integers(1, 12)), max_size=3),
)
def test_adversary_with_every_release_of_every_grain_derives_nothing_small(groups, changes) -> None:  # type: ignore[no-untyped-def]
    versions = [[i for i, n in groups for _ in range(n)]]
    for add, inc, n in changes:  # late facts and revisions: calls added or taken away
        current = list(versions[-1])
        if add:
            current += [inc] * n
        else:
            for _ in range(n):
                if current:
                    current.pop()
        versions.append(current)
    assert attack(versions) == []


def test_the_adversary_finds_what_a_naive_republication_tells() -> None:
    # the same two versions released without carrying what analysts knew: the change shows
    base = [("EAST", "D1", "no_enforcement", frozenset())] * 18 + [
        ("EAST", "D1", "involuntary_hold", frozenset())
    ] * 12
    later = [*base, ("EAST", "D1", "involuntary_hold", frozenset())]
    naive = [
        month_release(MONTH, counts_of(v), seq=n, max_small=MAX, attribute_max=20)
        for n, v in ((1, base), (2, later))
    ]
    assert any(
        "change of (('precinct', 'EAST'), 'outcome.involuntary_hold') by 1" in f
        for f in adversary(naive, [counts_of(base), counts_of(later)])
    )


def test_known_values_are_carried_over_releases() -> None:
    base = [("EAST", "D1", "no_enforcement", frozenset())] * 40
    first, second = releases_of([base, base])
    assert first.known == second.known
    ((area, metric), period) = parse_cell_key("calls|2024-03|all:all")
    assert first.known["calls|2024-03|all:all"] == [40] and (area, metric, period) == (
        ("all", "all"),
        "calls",
        "2024-03",
    )


def test_repeat_encounters_and_funnel_are_released_with_the_month_and_protected() -> None:
    # 32 people with 3+ contacts, 20 enrolled in BH services; a late enrolment makes it 21
    people = [(3, True)] * 20 + [(3, False)] * 12 + [(1, False)] * 15
    late = [(3, True)] * 21 + [(3, False)] * 11 + [(1, False)] * 15
    referrals = [{"furthest_stage": "completed"}] * 25 + [{"furthest_stage": "delivered"}] * 15
    first = month_release(MONTH, counts_of([]), seq=1, max_small=MAX, attribute_max=20)
    first = with_extras(first, people, referrals, MAX, {})
    second = month_release(
        MONTH, counts_of([]), seq=2, max_small=MAX, attribute_max=20, known_before=first.known
    )
    second = with_extras(second, late, referrals, MAX, first.known)
    rep1, rep2 = first.extras["repeat_encounters"], second.extras["repeat_encounters"]
    assert (rep1["three_plus"]["value"], rep1["three_plus_enrolled"]["value"]) == (32, 20)
    assert rep2["three_plus"]["value"] == 32  # unchanged: shown
    assert rep2["three_plus_enrolled"]["value"] is None  # 20 -> 21 would tell one more person
    funnel = second.extras["referral_funnel"]
    assert (funnel["requested"]["value"], funnel["completed"]["value"]) == (40, 25)
    doc = release_document(
        {
            "release_id": second.release,
            "period": "2024-03",
            "released_at": None,
            "code_version": "x",
            "vocabulary": None,
            "small_cell_max": MAX,
            "extras": second.extras,
        },
        [r.model_dump(mode="json") for r in second.records],
    )
    assert doc["headline"]["repeat_three_plus_enrolled"]["value"] is None
    assert doc["referral_funnel"]["completed"]["value"] == 25
