"""The adversary of the releases (test helper): everything small it can derive from every
release of a month — cells of each release, and changes of a cell between any two.

It knows the tables' equations (areas add up to the jurisdiction, outcomes to the calls with
an outcome, flags and their complements to the calls) and every shown value of every release;
it derives exactly (row reduction), bounds sums of withheld parts, and subtracts releases."""

from __future__ import annotations

from itertools import combinations

from projections.counts import FLAG_METRICS
from projections.outcomes import HIDDEN_PREFIX, PUBLISHED_METRICS, table_equations
from projections.releases import MonthRelease
from projections.suppression import derivable, exposed

MAX = 10


def adversary(releases: list[MonthRelease]) -> list[str]:
    """Everything small the adversary can find; [] when the releases are safe."""
    found: list[str] = []
    areas = {(r.area_kind, r.area) for rel in releases for r in rel.records}
    eqs, _ = table_equations(areas)
    cells = {
        (a, m)
        for a in areas | {("all", "all")}
        for m in (*PUBLISHED_METRICS, *(HIDDEN_PREFIX + f for f in FLAG_METRICS))
    }
    views = []
    for rel in releases:
        truth = {c: rel.table.values.get(c, 0) for c in cells}
        shown = {((r.area_kind, r.area), r.metric): r.value for r in rel.records if r.value is not None}
        assert all(truth[c] == v for c, v in shown.items()), "a published value is not the true one"
        unknown = cells - set(shown)
        small, narrow = exposed(truth, eqs, unknown, MAX)
        found += [f"{rel.release}: cell {c}" for c in small] + [f"{rel.release}: bounds {e}" for e in narrow]
        found += [f"{rel.release}: shown {c}={v}" for c, v in shown.items() if 1 <= v <= MAX]
        determined = derivable(truth, eqs, unknown)
        views.append((truth, set(shown) | determined))
    for (t1, k1), (t2, k2) in combinations(views, 2):
        diff = {c: t2[c] - t1[c] for c in cells}
        unknown = cells - (k1 & k2)
        for c in (k1 & k2) | derivable(diff, eqs, unknown):  # known in both, or determined
            if 1 <= abs(diff[c]) <= MAX:
                found.append(f"change of {c} by {diff[c]}")
    return found
