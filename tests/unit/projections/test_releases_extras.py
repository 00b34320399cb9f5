"""The adversary over a month's repeat-encounter and referral-funnel cells (issue 15 item 6:
"every analyst-visible publication ... cannot derive any value 1-10"), independent of the
suppression engine: from what two successive releases of one month show, it derives every
value the definitions allow (people with 1+, 2+, 3+ contacts and 3+ enrolled nest, and so do
the funnel's stages: any two shown cells tell how many are in one and not the other) and every
change between the releases, and none may be a small value."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.reporting import FUNNEL_STAGES, funnel_release, repeat_release

MAX = 10
SMALL = range(1, MAX + 1)

# (contacts, enrolled) per person; referrals by the furthest stage they reached
people = st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=60)
referrals = st.lists(st.sampled_from(FUNNEL_STAGES), max_size=60)


REPEAT_CHAIN = ("people", "two_plus", "three_plus", "three_plus_enrolled")  # each within the one before


def derived(doc: dict, chain: tuple[str, ...]) -> dict[str, int]:
    """Every value an analyst can compute from one release's cells of counts that nest: the
    shown cells and the difference of any two of them (those in one set and not the other)."""
    v = {k: doc[k]["value"] for k in chain if doc[k]["value"] is not None}
    for i, a in enumerate(chain):
        for b in chain[i + 1:]:
            if a in v and b in v:
                v[f"{a}-{b}"] = v[a] - v[b]
    return v


def small_disclosures(first: dict[str, int], second: dict[str, int]) -> list[str]:
    out = [f"{k}={x}" for d in (first, second) for k, x in d.items() if x in SMALL]
    out += [f"change {k}: {first[k]} -> {second[k]}" for k in first.keys() & second.keys()
            if abs(second[k] - first[k]) in SMALL]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people, people, referrals, referrals)
def test_repeat_and_funnel_cells_disclose_no_small_value_within_or_across_releases(
    p1: list, p_late: list, r1: list, r_late: list
) -> None:
    doc1, known = repeat_release(p1, MAX)
    doc2, _ = repeat_release(p1 + p_late, MAX, {k: [v] for k, v in known.items()})
    assert small_disclosures(derived(doc1, REPEAT_CHAIN), derived(doc2, REPEAT_CHAIN)) == []

    rows1 = [{"furthest_stage": s} for s in r1]
    rows2 = rows1 + [{"furthest_stage": s} for s in r_late]
    f1, fknown = funnel_release(rows1, MAX)
    f2, _ = funnel_release(rows2, MAX, {k: [v] for k, v in fknown.items()})
    assert small_disclosures(derived(f1, FUNNEL_STAGES), derived(f2, FUNNEL_STAGES)) == []


def test_a_month_with_enough_people_shows_its_repeat_cells() -> None:
    """Not everything withheld: 20 people once, 15 twice, 12 three times (7 enrolled would
    be small, so enrolled and its complement are withheld; the rest is shown)."""
    ppl = [(1, False)] * 20 + [(2, False)] * 15 + [(3, True)] * 7 + [(3, False)] * 5
    doc, _ = repeat_release(ppl, MAX)
    assert (doc["people"]["value"], doc["two_plus"]["value"]) == (47, 27)
    assert doc["three_plus"]["value"] == 12 and doc["three_plus_enrolled"]["value"] is None
