"""The adversary of the releases (test helper): everything small it can derive from every
release of a month — cells of each release, and changes of a cell between any two.

It knows the tables' equations (each area grain adds up to the jurisdiction, outcomes to the
calls with an outcome, flags and their complements to the calls, behavioral-health calls and
the others to the calls for service), the geography (which beat lies in which sector and
precinct: every coarse area is the sum of its parts in each finer grain, every finer area the
sum of its parts in each coarser one — built here independently of the code under test, one
unknown part per pair of areas the calls show), and every shown value of every release; it
derives exactly (row reduction), bounds sums of withheld parts, and subtracts releases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from itertools import combinations

from projections.areas import ALL_CALLS, NESTING, NON_BH, PATH_KINDS, Path
from projections.counts import FLAG_METRICS
from projections.custom_metrics import is_extension_metric
from projections.outcomes import HIDDEN_PREFIX, PUBLISHED_METRICS, table_equations
from projections.releases import MonthRelease
from projections.suppression import Equation, derivable, exposed, forced_zero

MAX = 10
METRICS = (*PUBLISHED_METRICS, *(HIDDEN_PREFIX + f for f in FLAG_METRICS), ALL_CALLS, NON_BH)
Counts = Mapping[tuple[Path, str], int]


def _pairs(counts: Counts, areas: set[tuple[str, str]], kinds: tuple[str, ...]) -> set[tuple[str, str]]:
    """The parts an analyst reckons with: for each nesting of two grains the feed has, every
    (coarse, fine) pair of known areas some call lies in, and — where calls lack a code — the
    unknown area paired with every area of the other grain."""
    idx = {k: i for i, k in enumerate(PATH_KINDS)}
    names = {k: {a for kk, a in areas if kk == k} for k in kinds}
    out: set[tuple[str, str]] = set()
    for a, b in NESTING:
        if a not in kinds or b not in kinds or names[a] <= {"unknown"} or names[b] <= {"unknown"}:
            continue
        kind = f"part:{a}:{b}"
        for path, _ in counts:
            x, y = path[idx[a]], path[idx[b]]
            if "unknown" not in (x, y):
                out.add((kind, f"{x}/{y}"))
        if "unknown" in names[b]:
            out |= {(kind, f"{x}/unknown") for x in names[a]}
        if "unknown" in names[a]:
            out |= {(kind, f"unknown/{y}") for y in names[b]}
    return out


def _truth(counts: Counts, kinds: tuple[str, ...]) -> dict[tuple[tuple[str, str], str], int]:
    """Every cell's true value: areas of each kind and the parts of every nesting pair."""
    out: dict[tuple[tuple[str, str], str], int] = defaultdict(int)
    idx = {k: i for i, k in enumerate(PATH_KINDS)}
    for (path, m), v in counts.items():
        groups = [("all", "all"), *((k, path[idx[k]]) for k in kinds)]
        groups += [(f"part:{a}:{b}", f"{path[idx[a]]}/{path[idx[b]]}") for a, b in NESTING
                   if a in kinds and b in kinds]
        for g in groups:
            out[(g, m)] += v
    for g in {g for g, _ in list(out)}:
        for f in FLAG_METRICS:
            out[(g, HIDDEN_PREFIX + f)] = out[(g, "calls")] - out[(g, f)]
        out[(g, NON_BH)] = out[(g, ALL_CALLS)] - out[(g, "calls")]
    return out


def _equations(areas: set[tuple[str, str]], parts: set[tuple[str, str]], kinds: tuple[str, ...]
               ) -> list[Equation]:
    eqs, _ = table_equations(areas | parts, kinds)
    for a in areas | parts | {("all", "all")}:
        eqs.append(Equation((a, ALL_CALLS), ((a, "calls"), (a, NON_BH))))
    for k in kinds:
        members = tuple(a for a in sorted(areas) if a[0] == k)
        if members:
            for m in (ALL_CALLS, NON_BH):
                eqs.append(Equation((("all", "all"), m), tuple((a, m) for a in members)))
    coarse: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    fine: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for kind, name in parts:
        _, a, b = kind.split(":")
        x, y = name.split("/")
        coarse[(a, x, b)].append((kind, name))
        fine[(b, y, a)].append((kind, name))
    for m in METRICS:
        for (k, name, _), ps in (*coarse.items(), *fine.items()):
            eqs.append(Equation(((k, name), m), tuple((p, m) for p in ps)))
    return eqs


def adversary(releases: list[MonthRelease], counts: list[Counts], *, nonnegative: bool = True) -> list[str]:
    """Everything small the adversary can find; [] when the releases are safe. ``counts``:
    each release's (area path, metric) counts (the truth the adversary attacks);
    ``nonnegative``: it also uses that counts are never negative (a part of a total 0 is 0)."""
    found: list[str] = []
    published = {(r.area_kind, r.area) for rel in releases for r in rel.records}
    kinds = tuple(k for k in PATH_KINDS if any(a[0] == k for a in published))
    truths = [_truth(c, kinds) for c in counts]
    areas = published | {g for t in truths for g, _ in t if g[0] in kinds}
    parts = {p for c in counts for p in _pairs(c, areas, kinds)}
    eqs = _equations(areas, parts, kinds)
    cells = {(a, m) for a in areas | parts | {("all", "all")} for m in METRICS}
    views = []
    for rel, t in zip(releases, truths, strict=True):
        truth = {c: t.get(c, 0) for c in cells}
        shown = {((r.area_kind, r.area), r.metric): r.value for r in rel.records  # county cells:
                 if r.value is not None and not is_extension_metric(r.metric)}  # custom_adversary's
        assert all(truth[c] == v for c, v in shown.items()), "a published value is not the true one"
        for r in rel.records:  # a rate is published only next to the counts it is made of
            if r.rate_per_1000_calls is not None:
                assert r.value is not None and shown.get(((r.area_kind, r.area), ALL_CALLS)) is not None
        unknown = cells - set(shown)
        small, narrow = exposed(truth, eqs, unknown, MAX, nonnegative=nonnegative)
        found += [f"{rel.release}: cell {c}" for c in small] + [f"{rel.release}: bounds {e}" for e in narrow]
        found += [f"{rel.release}: shown {c}={v}" for c, v in shown.items() if 1 <= v <= MAX]
        zeros = forced_zero(truth, eqs, unknown) if nonnegative else set()
        determined = derivable(truth, eqs, unknown - zeros) | zeros
        views.append((truth, set(shown) | determined))
    for (t1, k1), (t2, k2) in combinations(views, 2):
        diff = {c: t2[c] - t1[c] for c in cells}
        unknown = cells - (k1 & k2)
        for c in (k1 & k2) | derivable(diff, eqs, unknown):  # known in both, or determined
            if 1 <= abs(diff[c]) <= MAX:
                found.append(f"change of {c} by {diff[c]}")
    return found
