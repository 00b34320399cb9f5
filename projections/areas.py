"""Areas of need (pure): the finer area grains of the outcome tables — sector and beat —,
calls for service of every kind (the denominator of rates), and rates per 1,000 calls and
per 1,000 residents.

**Grains.** A call is where the feed says it happened: its precinct, district, sector and beat
(:func:`area_path`; ``unknown`` when the feed has none). Seattle publishes precinct ⊃ sector ⊃
beat, New Orleans district ⊃ beat, San Francisco (and the demo) districts only. Which finer
area lies in which coarser one (:data:`NESTING`) is geography an analyst knows, so a month's
table holds the equations ``precinct = Σ its sectors``, ``sector = Σ its beats`` ... for every
metric. They are taken from the data: when a finer area appears under several coarser ones (a
beat split by a boundary change, ``unknown`` beats) its part in each is a *split* cell — a
hidden area of kind ``<coarse>><fine>`` — so every equation holds exactly.

**Two stages.** The coarse table (jurisdiction, precincts, districts) is suppressed first, as
before (:func:`projections.outcomes.suppressed_table`); :func:`area_table` then adds the
sectors, beats and the calls for service to it *without changing one coarse cell*: the coarse
cells are fixed (withheld ones stay withheld, shown ones are never chosen as complements) and
complements are taken among the new cells only. If that cannot make every cell safe, every
new cell is withheld; if even then the coarse cells give a protected new cell away (a change
since an earlier release: the jurisdiction's calls minus a precinct of 0 tell the calls
without a sector), the whole table is suppressed at once, coarse cells included. The result
is checked against every equation together, old and new.

**Calls for service** (``all_calls``): calls of every kind received in the area (behavioral
health or not); ``calls`` (behavioral-health) + ``not.calls`` (hidden) = ``all_calls``. It is
suppressed like any count.

**Rates** (:func:`rates`): per 1,000 calls for service = ``value / all_calls * 1000`` of the
same area and period; per 1,000 residents = ``value / population * 1000`` with the county's
population table (:mod:`projections.population`). A rate is published only when its count
(and, per 1,000 calls, the calls for service) are shown: a suppressed count's rate is
suppressed too, and a shown rate is computed from shown values only, so it reveals nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, cast

from projections.counts import UNKNOWN_AREA, incident_metrics
from projections.outcomes import (
    HIDDEN_PREFIX,
    PUBLISHED_AREA_KINDS,
    PUBLISHED_METRICS,
    AreaKey,
    Cell,
    SuppressedTable,
    attribute_cells,
    table_equations,
)
from projections.suppression import Equation, derivable, exposed, forced_zero, suppress

#: the area kinds of the first stage (the month table as released before areas of need)
COARSE_KINDS = PUBLISHED_AREA_KINDS[1:]
#: the finer grains added by :func:`area_table`
FINE_KINDS = ("sector", "beat")
#: every area kind of a call, coarse first (the columns of ``incident_summary``)
PATH_KINDS = ("precinct", "district", "sector", "beat")
#: (coarser kind, finer kind): a finer area lies in one coarser area (geography analysts know)
NESTING = (
    ("precinct", "sector"),
    ("precinct", "beat"),
    ("sector", "beat"),
    ("district", "sector"),
    ("district", "beat"),
)
ALL_CALLS = "all_calls"  # calls for service of every kind in the area
NON_BH = HIDDEN_PREFIX + "calls"  # all_calls - calls (hidden)
#: the metrics of a table with calls for service
AREA_METRICS = (*PUBLISHED_METRICS, ALL_CALLS)
SPLIT_SEPARATOR = ">"

Path = tuple[str, str, str, str]  # (precinct, district, sector, beat)
PathCounts = Mapping[tuple[Path, str], int]


def area_path(row: Mapping[str, Any]) -> Path:
    """The (precinct, district, sector, beat) of an incident row, ``unknown`` where missing."""
    p, d, s, b = (str(row.get(k) or UNKNOWN_AREA) for k in PATH_KINDS)
    return (p, d, s, b)


def path_counts(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[Path, str], int]:
    """(area path, metric) → count, from incident rows of every kind (a row may carry a
    weight ``n``, e.g. a grouped SQL row): behavioral-health rows count in their
    :func:`projections.counts.incident_metrics`, every row with a received call in
    :data:`ALL_CALLS`."""
    out: dict[tuple[Path, str], int] = defaultdict(int)
    for row in rows:
        metrics = incident_metrics(dict(row))
        if not metrics:
            continue
        n = int(row.get("n", 1))
        path = area_path(row)
        out[(path, ALL_CALLS)] += n
        if row.get("behavioral_health"):
            for m in metrics:
                out[(path, m)] += n
    return dict(out)


def kind_counts(counts: PathCounts, kinds: Iterable[str] = PATH_KINDS) -> dict[tuple[str, str, str], int]:
    """(area kind, area, metric) → count for the jurisdiction (``all``) and each of ``kinds``
    (the input of :func:`projections.outcomes.suppressed_table`)."""
    index = {k: i for i, k in enumerate(PATH_KINDS)}
    out: dict[tuple[str, str, str], int] = defaultdict(int)
    for (path, m), v in counts.items():
        out[("all", "all", m)] += v
        for k in kinds:
            out[(k, path[index[k]], m)] += v
    return dict(out)


def split_kind(coarse: str, fine: str) -> str:
    return f"{coarse}{SPLIT_SEPARATOR}{fine}"


def is_split(area: AreaKey) -> bool:
    return SPLIT_SEPARATOR in area[0]


def present_kinds(paths: Iterable[Path]) -> tuple[str, ...]:
    """The coarse kinds (always) and the fine kinds the feed has (a known area on some call)."""
    paths = list(paths)
    index = {k: i for i, k in enumerate(PATH_KINDS)}
    fine = [k for k in FINE_KINDS if any(p[index[k]] != UNKNOWN_AREA for p in paths)]
    return (*COARSE_KINDS, *fine)


def nesting_pairs(paths: Iterable[Path], kinds: Iterable[str] = PATH_KINDS
                  ) -> frozenset[tuple[str, str, str, str]]:
    """(coarse kind, coarse area, fine kind, fine area) of every :data:`NESTING` pair of
    ``kinds`` the calls on ``paths`` show."""
    index = {k: i for i, k in enumerate(PATH_KINDS)}
    kinds = set(kinds)
    return frozenset(
        (a, path[index[a]], b, path[index[b]]) for path in paths for a, b in NESTING if {a, b} <= kinds
    )


Pair = tuple[str, str, str, str]


def nesting(pairs: frozenset[Pair], areas: Iterable[AreaKey]) -> dict[Pair, AreaKey]:
    """Every (coarse, fine) pair of areas an analyst must reckon with, and the area whose cells
    count the calls in both.

    Between known codes, the pairs the calls show are the geography: the fine area's cells
    when it lies in one coarse area only, else the coarse area's when it holds that fine area
    only, else a split area (kind ``<coarse>><fine>``, hidden). Where ``unknown`` is an area
    (calls without a code), nobody knows in which areas those calls lie: the unknown area
    pairs with *every* area of the other kind, each as a hidden split (0 where no call is).
    Kinds whose only area is ``unknown`` (the feed does not have them) take no part."""
    areas = set(areas)
    by_kind: dict[str, set[str]] = defaultdict(set)
    for k, name in areas:
        by_kind[k].add(name)
    out: dict[Pair, AreaKey] = {}
    for a_kind, b_kind in NESTING:
        if by_kind[a_kind] <= {UNKNOWN_AREA} or by_kind[b_kind] <= {UNKNOWN_AREA}:
            continue
        known = {(a, b) for k1, a, k2, b in pairs
                 if (k1, k2) == (a_kind, b_kind) and UNKNOWN_AREA not in (a, b)}
        unknown_a, unknown_b = UNKNOWN_AREA in by_kind[a_kind], UNKNOWN_AREA in by_kind[b_kind]
        every = set(known)
        if unknown_b:
            every |= {(a, UNKNOWN_AREA) for a in by_kind[a_kind]}
        if unknown_a:
            every |= {(UNKNOWN_AREA, b) for b in by_kind[b_kind]}
        parents: dict[str, set[str]] = defaultdict(set)
        children: dict[str, set[str]] = defaultdict(set)
        for a, b in every:
            parents[b].add(a)
            children[a].add(b)
        for a, b in every:
            if UNKNOWN_AREA not in (a, b) and len(parents[b]) == 1:
                x = (b_kind, b)
            elif UNKNOWN_AREA not in (a, b) and len(children[a]) == 1:
                x = (a_kind, a)
            else:
                x = (split_kind(a_kind, b_kind), f"{a}{SPLIT_SEPARATOR}{b}")
            out[(a_kind, a, b_kind, b)] = x
    return out


def nesting_equations(cellof: Mapping[Pair, AreaKey], metrics: Iterable[str]) -> list[Equation]:
    """``coarse = Σ its parts in each finer grain`` and ``fine = Σ its parts in each coarser
    grain`` for every metric (trivial ones dropped)."""
    by_coarse: dict[tuple[AreaKey, str], list[AreaKey]] = defaultdict(list)  # (coarse, fine kind)
    by_fine: dict[tuple[AreaKey, str], list[AreaKey]] = defaultdict(list)  # (fine, coarse kind)
    for (a_kind, a, b_kind, b), x in sorted(cellof.items()):
        by_coarse[((a_kind, a), b_kind)].append(x)
        by_fine[((b_kind, b), a_kind)].append(x)
    eqs: list[Equation] = []
    for m in metrics:
        for groups in (by_coarse, by_fine):
            for (total, _), xs in sorted(groups.items()):
                if xs != [total]:
                    eqs.append(Equation((total, m), tuple((x, m) for x in xs)))
    return eqs


def split_values(counts: PathCounts, cellof: Mapping[Pair, AreaKey]) -> dict[Cell, int]:
    """The values of the split areas' cells (calls in the coarse area *and* the fine one)."""
    index = {k: i for i, k in enumerate(PATH_KINDS)}
    out: dict[Cell, int] = defaultdict(int)
    for (path, m), v in counts.items():
        for a_kind, b_kind in NESTING:
            x = cellof.get((a_kind, path[index[a_kind]], b_kind, path[index[b_kind]]))
            if x is not None and is_split(x):
                out[(x, m)] += v
    return dict(out)


def area_system(
    counts: PathCounts, areas: Iterable[AreaKey], kinds: Iterable[str], unmeasured: Iterable[str] = ()
) -> tuple[dict[Cell, int], list[Equation], set[Cell]]:
    """(values, equations, hidden cells) of the full table over ``areas`` (the jurisdiction
    and areas of ``kinds``), with calls for service and the nesting of the areas the calls
    show: what an analyst knows of a month (the adversary of the tests uses it too)."""
    kinds = tuple(kinds)
    areas = sorted({a for a in areas if a[0] in kinds} | {("all", "all")})
    cellof = nesting(nesting_pairs((path for path, _ in counts), kinds), areas)
    splits = sorted({x for x in cellof.values() if is_split(x)})
    everything = [*areas, *splits]
    eqs, hidden_list = table_equations(everything, kinds)
    hidden = set(hidden_list)
    members = {k: [a for a in areas if a[0] == k] for k in kinds}
    for a in everything:
        eqs.append(Equation((a, ALL_CALLS), ((a, "calls"), (a, NON_BH))))
        hidden.add((a, NON_BH))
        hidden |= {(a, m) for m in unmeasured}
    for k in kinds:
        if members[k]:
            for m in (ALL_CALLS, NON_BH):
                eqs.append(Equation((("all", "all"), m), tuple((a, m) for a in members[k])))
    metrics = [*AREA_METRICS, *(c[1] for c in hidden_list if c[0] == ("all", "all")), NON_BH]
    eqs += nesting_equations(cellof, dict.fromkeys(metrics))
    for x in splits:
        hidden |= {(x, m) for m in metrics}
    totals = kind_counts(counts)
    values: dict[Cell, int] = defaultdict(int)
    for a in everything:
        for m in AREA_METRICS:
            values[(a, m)] = totals.get((a[0], a[1], m), 0)
    values.update(split_values(counts, cellof))
    for a in everything:
        for m in metrics:
            values.setdefault((a, m), 0)
        for c in hidden_list:
            if c[0] == ("all", "all"):
                flag = c[1].removeprefix(HIDDEN_PREFIX)
                values[(a, c[1])] = values[(a, "calls")] - values[(a, flag)]
        values[(a, NON_BH)] = values[(a, ALL_CALLS)] - values[(a, "calls")]
    return dict(values), eqs, hidden


def area_table(
    counts: PathCounts,
    coarse: SuppressedTable,
    max_small: int,
    *,
    unmeasured: Iterable[str] = (),
    known_before: Mapping[Cell, Iterable[int]] | None = None,
    attribute_max: int = 0,
) -> SuppressedTable:
    """``coarse`` (the suppressed jurisdiction / precinct / district table of the same calls)
    extended with sectors, beats and calls for service, every coarse cell unchanged (see the
    module docstring; unchanged unless the coarse cells alone would give a protected new cell
    away). Cells of the coarse table beyond the built-in grid (county metrics,
    :mod:`projections.custom_metrics`) stay as they are, published with the coarse areas
    only, and their equations are part of the system the new cells are checked against.
    ``known_before``: what analysts knew of the new cells from earlier releases (a change of
    1 to ``max_small`` is protected, as in the coarse table)."""
    unmeasured = tuple(unmeasured)
    before = known_before or {}
    kinds = present_kinds([path for path, _ in counts] + [
        _path_of(c[0]) for c in before if c[0][0] in FINE_KINDS])
    areas: set[AreaKey] = {a for a, _ in coarse.values}
    areas |= {(k, path[i]) for (path, _) in counts for i, k in enumerate(PATH_KINDS) if k in kinds}
    areas |= {c[0] for c in before if c[0][0] in kinds}  # an area that lost its calls is 0 now
    values, eqs, hidden = area_system(counts, areas, kinds, unmeasured)
    assert all(values[c] == v for c, v in coarse.values.items() if c in values), (
        "the coarse table counts other calls")
    new = [c for c in values if c not in coarse.values]
    # cells only the coarse table has (county metrics, their atoms and parts) and their
    # equations: the new cells are made safe against those too
    values.update({c: v for c, v in coarse.values.items() if c not in values})
    own = set(eqs)
    eqs += [e for e in coarse.equations if e not in own]
    protect = set(coarse.protected) | {
        c for c, olds in before.items()
        if c in values and c not in coarse.values and any(1 <= abs(values[c] - v) <= max_small for v in olds)
    }
    if attribute_max:
        protect |= {c for c in attribute_cells(values, eqs, attribute_max) if c not in coarse.values}
    kept = frozenset(c for c in coarse.values if c not in coarse.hidden)
    start = set(coarse.hidden) | {c for c in hidden if c not in kept}
    hide = suppress(values, eqs, start, max_small, protect, keep=kept, nonnegative=True)
    small, narrow = exposed(values, eqs, hide, max_small, frozenset(protect), nonnegative=True)
    if small or narrow or hide & kept:
        hide = set(coarse.hidden) | set(new)  # withhold every new cell
        small, narrow = exposed(values, eqs, hide, max_small, frozenset(protect), nonnegative=True)
        if small or narrow:
            # the coarse cells alone give a protected new cell away (a sector's change since an
            # earlier release, derived from the jurisdiction and a precinct of 0): only then
            # are coarse cells withheld too, the whole table suppressed at once
            hide = suppress(values, eqs, hide, max_small, protect, nonnegative=True)
    zeros = forced_zero(values, eqs, hide)
    determined = derivable(values, eqs, hide - zeros) | zeros
    # split cells are known too: a split derivable in two releases would tell its change
    known = {c: v for c, v in values.items() if c not in hide or c in determined}
    # a grain no call has: every call's area of it is unknown, as analysts can tell, so a
    # later release that adds the grain protects the change of its unknown cell
    implied = {c[1]: v for c, v in known.items() if c[0] == ("all", "all")}
    for kind in (k for k in FINE_KINDS if k not in kinds):
        known.update({((kind, UNKNOWN_AREA), m): v for m, v in implied.items()})
    grid = tuple((a, m) for a in sorted(areas | {("all", "all")}) for m in AREA_METRICS if not is_split(a))
    on_grid = set(grid)
    published = (*grid, *(c for c in coarse.published if c not in on_grid))  # + the county cells
    return SuppressedTable(
        values, frozenset(cast(set[Cell], hide)), known, published, tuple(eqs), frozenset(protect)
    )


def _path_of(area: AreaKey) -> Path:
    """A path with only ``area`` known (for the kinds of areas known from earlier releases)."""
    p, d, s, b = (area[1] if k == area[0] else UNKNOWN_AREA for k in PATH_KINDS)
    return (p, d, s, b)


def rate(value: int | None, denominator: int | float | None) -> float | None:
    """``value / denominator * 1000`` to one decimal; None when either is withheld or the
    denominator is not positive."""
    if value is None or denominator is None or denominator <= 0:
        return None
    return round(value * 1000 / denominator, 1)


def rates(
    shown: Mapping[Cell, int | None], population: Mapping[AreaKey, int] | None = None
) -> dict[Cell, tuple[float | None, float | None]]:
    """(per 1,000 calls for service, per 1,000 residents) of every shown cell: from the
    cell's shown value and its area's shown :data:`ALL_CALLS` / its population (None when
    the count is withheld, the area has no shown calls for service or no population)."""
    population = population or {}
    out: dict[Cell, tuple[float | None, float | None]] = {}
    for (area, m), v in shown.items():
        per_calls = None if m == ALL_CALLS else rate(v, shown.get((area, ALL_CALLS)))
        out[(area, m)] = (per_calls, rate(v, population.get(area)))
    return out


def with_calls_for_service(
    table: SuppressedTable, calls_for_service: Mapping[AreaKey, int], partitions: Iterable[tuple[str, ...]],
    max_small: int,
) -> SuppressedTable:
    """``table`` (a suppressed table of behavioral-health calls by group) with each group's
    calls for service (:data:`ALL_CALLS`, ``calls_for_service``: group → calls of every kind)
    added without changing any of its cells, as :func:`area_table` does. ``partitions``: the
    group kinds whose groups add up to the total (:func:`projections.outcomes.table_equations`)."""
    values = dict(table.values)
    groups = sorted({a for a, _ in table.values})
    eqs = list(table.equations)
    new: list[Cell] = []
    for g in groups:
        values[(g, ALL_CALLS)] = max(calls_for_service.get(g, 0), values.get((g, "calls"), 0))
        values[(g, NON_BH)] = values[(g, ALL_CALLS)] - values.get((g, "calls"), 0)
        eqs.append(Equation((g, ALL_CALLS), ((g, "calls"), (g, NON_BH))))
        new += [(g, ALL_CALLS), (g, NON_BH)]
    for kinds in partitions:
        members = tuple(g for g in groups if g[0] in kinds)
        if members:
            for m in (ALL_CALLS, NON_BH):
                eqs.append(Equation((("all", "all"), m), tuple((g, m) for g in members)))
    kept = frozenset(c for c in table.values if c not in table.hidden)
    start = set(table.hidden) | {(g, NON_BH) for g in groups}
    hide = suppress(values, eqs, start, max_small, table.protected, keep=kept, nonnegative=True)
    small, narrow = exposed(values, eqs, hide, max_small, table.protected, nonnegative=True)
    if small or narrow or hide & kept:
        hide = set(table.hidden) | set(new)
    zeros = forced_zero(values, eqs, hide)
    determined = derivable(values, eqs, hide - zeros) | zeros
    known = {c: v for c, v in values.items() if c not in hide or c in determined}
    published = (*table.published, *((g, ALL_CALLS) for g in groups))
    return SuppressedTable(values, frozenset(cast(set[Cell], hide)), known, published, tuple(eqs),
                           table.protected)
