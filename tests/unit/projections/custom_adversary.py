"""The adversary of county metrics (test helper): what it can derive from one published table
that holds built-in and county cells — independent of how the suppression models it.

It works in the space of *raw atoms*: per published area, every combination of the raw
values of the fields the county metrics and the co-responder flag range over (primary
outcome or none, co-responder yes/no, each custom field's values or not recorded) — all of
them, empty or not, since an analyst cannot know which are empty. Every shown cell is the
sum of the atoms its definition selects (evaluated with the definitions' own filters on a
row made of the atom's values); every atom of the jurisdiction is the sum of its atoms in
each area grain, and the geography holds atom by atom (a precinct is the sum of its parts
in the sectors and beats, a beat the sum of its parts in the precincts and sectors: one
unknown part per pair of areas the calls show, the unknown area paired with every area of
the other grain). A target is *derivable* when its vector lies in the span of the shown
cells' vectors (row reduction modulo a large prime). Targets: every conjunction of one
value (or none) per field, per area — "holds of unsheltered people in EAST without a
co-responder", and every set of values of a custom field ("not unsheltered"). Built-in
fields no county metric names (referral made, connected to services) are left out: cells
over disjoint fields share only their sums over the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hub.kernel.custom_fields import Definitions
from projections.areas import NESTING, PATH_KINDS
from projections.custom_metrics import denominator_metric, numerator_metric
from schemas.outcome import PRIMARY_OUTCOMES

_P = (1 << 61) - 1
NONE = None
MISSING = "<missing>"


def _reduce(row: dict[int, int], basis: dict[int, dict[int, int]]) -> dict[int, int]:
    """``row`` minus its components along the basis (each basis row's pivot is its smallest
    column, so eliminating pivots in increasing order terminates)."""
    row = dict(row)
    while True:
        pivots = [c for c in row if c in basis]
        if not pivots:
            return row
        c = min(pivots)
        f = row[c]
        for j, v in basis[c].items():
            nv = (row.get(j, 0) - f * v) % _P
            if nv:
                row[j] = nv
            else:
                row.pop(j, None)


def _span(rows: Iterable[dict[int, int]]) -> dict[int, dict[int, int]]:
    """A basis of the rows' span: pivot column → row scaled to 1 at its pivot."""
    basis: dict[int, dict[int, int]] = {}
    for r in rows:
        r = _reduce(r, basis)
        if r:
            c = min(r)
            inv = pow(r[c], _P - 2, _P)
            basis[c] = {j: v * inv % _P for j, v in r.items()}
    return basis


def _in_span(vec: dict[int, int], basis: dict[int, dict[int, int]]) -> bool:
    return not _reduce(vec, basis)


def _row(values: Mapping[str, Any]) -> dict[str, Any]:
    """An incident row of an atom's values (what the definitions' filters read)."""
    custom = {k: v for k, v in values.items() if k not in ("outcome", "co_responder") and v != MISSING}
    return {"outcome": values["outcome"], "co_responder": values["co_responder"], "custom": custom}


BUILTIN_PREDICATES = {
    "calls": lambda r: True,
    "with_outcome": lambda r: r["outcome"] is not None,
    "no_outcome": lambda r: r["outcome"] is None,
    "co_responder": lambda r: bool(r["co_responder"]),
    **{f"outcome.{o}": (lambda r, o=o: r["outcome"] == o) for o in PRIMARY_OUTCOMES},
}


def custom_adversary(defs: Definitions, calls: Sequence[Mapping[str, Any]],
                     shown: Mapping[tuple[tuple[str, str], str], int], max_small: int = 10) -> list[str]:
    """Everything small derivable from ``shown`` ((area, metric) → value of every published,
    not withheld cell) about ``calls`` (rows with ``precinct``, ``district``, ``sector``,
    ``beat`` (optional), ``outcome``,
    ``co_responder`` and ``custom``) that the built-in cells alone do not give (those are the
    built-in rule's: :mod:`tests.unit.projections.release_adversary`); [] when the table is safe."""
    fields = sorted(defs.fields)
    domains: list[tuple[str, tuple[Any, ...]]] = [
        ("outcome", (*PRIMARY_OUTCOMES, NONE)),
        ("co_responder", (True, False)),
        *((f, (*defs.fields[f].values, MISSING)) for f in fields),
    ]
    space = [dict(zip([d for d, _ in domains], combo, strict=True))
             for combo in itertools.product(*(vals for _, vals in domains))]
    kinds = [k for k in PATH_KINDS if any(a[0] == k for a, _ in shown)]
    areas = sorted({a for a, _ in shown} | {(k, c.get(k) or "unknown") for c in calls for k in kinds}
                   | {("all", "all")})
    index = {(a, i): n for n, (a, i) in enumerate(itertools.product(areas, range(len(space))))}
    predicates: dict[str, Any] = dict(BUILTIN_PREDICATES)
    for m in defs.metrics:
        predicates[numerator_metric(m.id)] = lambda r, m=m: defs.matches(m.numerator, r)
        predicates[denominator_metric(m.id)] = lambda r, m=m: defs.matches(m.denominator, r)
    rows = [_row(v) for v in space]
    eqs, builtin_eqs = [], []
    for (a, metric), _ in shown.items():
        test = predicates.get(metric)
        if test is not None:
            eqs.append({index[(a, i)]: 1 for i, r in enumerate(rows) if test(r)})
            if metric in BUILTIN_PREDICATES:
                builtin_eqs.append(eqs[-1])
    partitions = []
    for kind in kinds:
        members = [a for a in areas if a[0] == kind]
        for i in range(len(space)):
            eq = {index[(("all", "all"), i)]: 1}
            for a in members:
                eq[index[(a, i)]] = _P - 1
            partitions.append(eq)
    part_of: dict[tuple[str, str, str, str], int] = {}

    def column(part: tuple[str, str, str, str], i: int) -> int:  # a part's atoms: after the areas'
        return len(index) + part_of.setdefault(part, len(part_of)) * len(space) + i

    for (a, b), pairs in _pairs(calls, areas, kinds).items():  # the geography, atom by atom
        for i in range(len(space)):
            for x in {x for x, _ in pairs}:
                eq = {index[((a, x), i)]: 1}
                for y in sorted(y for xx, y in pairs if xx == x):
                    eq[column((a, x, b, y), i)] = _P - 1
                partitions.append(eq)
            for y in {y for _, y in pairs}:
                eq = {index[((b, y), i)]: 1}
                for x in sorted(x for x, yy in pairs if yy == y):
                    eq[column((a, x, b, y), i)] = _P - 1
                partitions.append(eq)
    basis = _span(e for e in [*eqs, *partitions] if e)
    builtin = _span(e for e in [*builtin_eqs, *partitions] if e)
    truth: dict[tuple[tuple[str, str], int], int] = {}
    for c in calls:
        values = {"outcome": c.get("outcome"), "co_responder": bool(c.get("co_responder")),
                  **{f: (c.get("custom") or {}).get(f, MISSING) for f in fields}}
        i = space.index(values)
        for a in (("all", "all"), *((k, c.get(k) or "unknown") for k in PATH_KINDS)):
            if a in areas:
                truth[(a, i)] = truth.get((a, i), 0) + 1
    found = []
    options = [(d, _value_sets(d, vals)) for d, vals in domains]
    for a in areas:
        for choice in itertools.product(*(opts for _, opts in options)):
            members = [i for i, v in enumerate(space)
                       if all(ch is None or v[d] in ch for (d, _), ch in zip(options, choice, strict=True))]
            value = sum(truth.get((a, i), 0) for i in members)
            target = {index[(a, i)]: 1 for i in members}
            if 1 <= value <= max_small and _in_span(target, basis) and not _in_span(target, builtin):
                what = {d: sorted(map(str, ch)) for (d, _), ch in zip(options, choice, strict=True) if ch}
                found.append(f"{a}: {what} = {value}")
    return found


def _pairs(calls: Sequence[Mapping[str, Any]], areas: Sequence[tuple[str, str]], kinds: Sequence[str]
           ) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(coarse kind, fine kind) → the (coarse, fine) pairs of areas an analyst reckons with:
    the known pairs some call lies in and, where a grain has ``unknown``, the unknown area
    paired with every area of the other grain. Grains whose only area is ``unknown`` take no
    part."""
    names = {k: {n for kk, n in areas if kk == k} for k in kinds}
    out: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for a, b in NESTING:
        if a not in names or b not in names or names[a] <= {"unknown"} or names[b] <= {"unknown"}:
            continue
        pairs = {(c.get(a) or "unknown", c.get(b) or "unknown") for c in calls}
        pairs = {(x, y) for x, y in pairs if "unknown" not in (x, y)}
        if "unknown" in names[b]:
            pairs |= {(x, "unknown") for x in names[a]}
        if "unknown" in names[a]:
            pairs |= {("unknown", y) for y in names[b]}
        out[(a, b)] = pairs
    return out


def _value_sets(dim: str, values: tuple[Any, ...]) -> list[frozenset[Any] | None]:
    """The conditions a target puts on one field: none, one value, every value but one, and
    for custom fields every set of values ("not unsheltered" = housed, sheltered or not
    recorded); for the outcome also "with an outcome"."""
    if dim == "outcome":
        singles = [frozenset([v]) for v in values]
        return [None, *singles, *(frozenset(values) - s for s in singles)]
    if dim == "co_responder":
        return [None, frozenset([True]), frozenset([False])]
    return [None, *(frozenset(c) for n in range(1, len(values)) for c in itertools.combinations(values, n))]
