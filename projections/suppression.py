"""Small-cell suppression for published aggregates (CMS cell-size rule), pure.

A published table is a set of cells with non-negative integer values, some *hidden*
(never published, e.g. "calls without a referral"), and linear equations
``total = sum(parts)`` that hold between them (an area's outcomes add up to its calls,
the precincts add up to the whole city ...). An analyst knows the equations.

Rule: no published cell shows a value from 1 to ``max_small`` (primary suppression), and
no suppressed or hidden cell with such a value can be derived from what is published
(complementary suppression):

0. non-negativity — counts are never negative, so every part of a total known to be 0 is 0
   (:func:`forced_zero`; with ``nonnegative``, which every published table uses);
1. exact derivation — the cell is determined by the equations given the published
   values (checked exactly, by row reduction);
2. narrow bounds — an equation whose total is published and whose unknown parts are all
   suppressed reveals their sum; a sum from 1 to ``max_small`` bounds every one of them
   to a small value, so it counts as a derivation too.

:func:`suppress` adds complementary cells (smallest positive value first, totals last)
until neither holds; zero is allowed to be derived (the rule allows showing 0).

*Protected* cells are sensitive whatever their value: they are suppressed and must not be
derivable exactly either. Callers protect a cell whose change since the last release is
from 1 to ``max_small`` (the change would tell "one more hold in EAST") and a cell that
equals a small total (every call of a small group has the attribute).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Cell = Hashable
#: cell → count; ``Any`` keys because ``Mapping`` is invariant in its key type and callers
#: key their tables by their own (hashable) cell types
Values = Mapping[Any, int]


@dataclass(frozen=True)
class Equation:
    """``total == sum(parts)``."""

    total: Cell
    parts: tuple[Cell, ...]

    @property
    def cells(self) -> tuple[Cell, ...]:
        return (self.total, *self.parts)


# Row reduction runs modulo a large prime: exact integer arithmetic, far faster than
# fractions. A rank can only differ from the rational one when the prime divides a minor
# of a 0/±1 matrix, which for tables of this size is practically impossible.
_PRIME = (1 << 61) - 1


def derivable(values: Values, equations: Iterable[Equation], unknown: set[Cell]) -> set[Cell]:
    """The unknown cells whose value the equations determine exactly, given every other
    cell's value. (Row reduction of the equations restricted to the unknowns: a cell is
    determined iff its unit vector lies in their row space.)"""
    order = sorted(unknown, key=repr)
    col = {c: i for i, c in enumerate(order)}
    matrix: list[dict[int, int]] = []  # sparse rows: column -> coefficient mod p
    for eq in equations:
        row: dict[int, int] = {}
        for c, coef in ((eq.total, 1), *((p, -1) for p in eq.parts)):
            if c in col:
                j = col[c]
                row[j] = (row.get(j, 0) + coef) % _PRIME
        row = {j: v for j, v in row.items() if v}
        if row:
            matrix.append(row)
    pivot_rows: dict[int, dict[int, int]] = {}  # pivot column -> reduced row (pivot = 1)
    for row in matrix:
        for c, prow in pivot_rows.items():  # eliminate known pivots
            f = row.get(c)
            if f:
                for j, v in prow.items():
                    nv = (row.get(j, 0) - f * v) % _PRIME
                    if nv:
                        row[j] = nv
                    else:
                        row.pop(j, None)
        if not row:
            continue
        c = min(row)
        inv = pow(row[c], _PRIME - 2, _PRIME)
        row = {j: v * inv % _PRIME for j, v in row.items()}
        for other in pivot_rows.values():  # keep earlier rows reduced
            f = other.get(c)
            if f:
                for j, v in row.items():
                    nv = (other.get(j, 0) - f * v) % _PRIME
                    if nv:
                        other[j] = nv
                    else:
                        other.pop(j, None)
        pivot_rows[c] = row
    return {order[c] for c, row in pivot_rows.items() if len(row) == 1}


def forced_zero(values: Values, equations: Iterable[Equation], unknown: set[Cell]) -> set[Cell]:
    """The unknown cells non-negativity forces to 0: every part of an equation whose total is
    known — shown, forced, or derived exactly — to be 0. Counts cannot be negative, so an
    analyst knows them."""
    equations = list(equations)
    zero: set[Cell] = set()
    while True:
        changed = False
        for eq in equations:
            if (eq.total not in unknown or eq.total in zero) and values.get(eq.total, 0) == 0:
                new = [p for p in eq.parts if p in unknown and p not in zero]
                if new:
                    zero.update(new)
                    changed = True
        if changed:
            continue
        # a withheld total of 0 that the equations determine forces its parts too
        candidates = {eq.total for eq in equations
                      if eq.total in unknown and eq.total not in zero and values.get(eq.total, 0) == 0
                      and any(p in unknown and p not in zero for p in eq.parts)}
        found = derivable(values, equations, unknown - zero) & candidates if candidates else set()
        if not found:
            return zero
        zero |= found


def exposed(
    values: Values, equations: list[Equation], unknown: set[Cell], max_small: int,
    protect: frozenset[Cell] = frozenset(), *, nonnegative: bool = False,
) -> tuple[set[Cell], list[Equation]]:
    """(small or protected unknown cells derivable exactly, equations whose revealed sum is
    small). ``nonnegative``: the analyst also uses that counts are never negative
    (:func:`forced_zero`)."""

    def sensitive(c: Cell) -> bool:
        return c in protect or 1 <= values.get(c, 0) <= max_small

    zeros = forced_zero(values, equations, unknown) if nonnegative else set()
    small: set[Cell] = {c for c in zeros if sensitive(c)}
    unknown = unknown - zeros
    if any(sensitive(c) for c in unknown):  # else nothing sensitive to find
        small |= {c for c in derivable(values, equations, unknown) if sensitive(c)}
    narrow = []
    for eq in equations:
        if eq.total in unknown:
            continue
        hidden = [p for p in eq.parts if p in unknown]
        if hidden and 1 <= sum(values.get(p, 0) for p in hidden) <= max_small:
            narrow.append(eq)
    return small, narrow


def _complement(values: Values, eq: Equation, unknown: set[Cell],
                keep: frozenset[Cell] = frozenset()) -> Cell | None:
    """The cell of ``eq`` to suppress next: smallest positive part, else the total, else a zero
    part; never one of ``keep``."""
    parts = sorted(
        (p for p in eq.parts if p not in unknown and p not in keep),
        key=lambda p: (values.get(p, 0) == 0, values.get(p, 0), repr(p)),
    )
    positive = [p for p in parts if values.get(p, 0) > 0]
    if positive:
        return positive[0]
    if eq.total not in unknown and eq.total not in keep:
        return eq.total
    return parts[0] if parts else None


def suppress(
    values: Values,
    equations: Iterable[Equation],
    hidden: Iterable[Cell] = (),
    max_small: int = 10,
    protect: Iterable[Cell] = (),
    keep: Iterable[Cell] = (),
    *,
    nonnegative: bool = False,
) -> set[Cell]:
    """The cells not to publish (primary + complementary), hidden cells included;
    ``protect``: cells to withhold and keep underivable whatever their value. ``keep``: cells
    already published that must not be chosen as complements (extending a table that was
    suppressed before, :mod:`projections.areas`); when only a kept cell could protect an
    exposed one the result is NOT safe — callers check it with :func:`exposed`."""
    equations = list(equations)
    guarded = frozenset(protect)
    kept = frozenset(keep)
    unknown = set(hidden) | guarded | {c for c, v in values.items() if 1 <= v <= max_small}
    while True:
        changed = False
        # cheap pass: an equation with a single small (or protected) unknown gives it away
        for eq in equations:
            hid = [c for c in eq.cells if c in unknown]
            if len(hid) == 1 and (hid[0] in guarded or 1 <= values.get(hid[0], 0) <= max_small):
                extra = _complement(values, eq, unknown, kept)
                if extra is not None:
                    unknown.add(extra)
                    changed = True
        if changed:
            continue
        small, narrow = exposed(values, equations, unknown, max_small, guarded, nonnegative=nonnegative)
        if not small and not narrow:
            return unknown
        extra = _next_complement(values, equations, unknown, narrow, small, kept)
        if extra is None:  # everything connected is suppressed already
            return unknown
        unknown.add(extra)


def _next_complement(
    values: Values,
    equations: list[Equation],
    unknown: set[Cell],
    narrow: list[Equation],
    small: set[Cell],
    keep: frozenset[Cell] = frozenset(),
) -> Cell | None:
    """A cell whose suppression helps: in a narrow equation, else in an equation of an
    exposed cell, else (breadth-first) in an equation of an unknown cell those share an
    equation with — a derivation chain can be broken anywhere along it."""
    for eq in narrow:
        extra = _complement(values, eq, unknown, keep)
        if extra is not None:
            return extra
    seen_cells = set(small)
    seen_eqs: set[int] = set()
    frontier = sorted(small, key=repr)
    while frontier:
        next_cells: list[Cell] = []
        for cell in frontier:
            for i, eq in enumerate(equations):
                if i in seen_eqs or cell not in eq.cells:
                    continue
                seen_eqs.add(i)
                extra = _complement(values, eq, unknown, keep)
                if extra is not None:
                    return extra
                for c in eq.cells:
                    if c in unknown and c not in seen_cells:
                        seen_cells.add(c)
                        next_cells.append(c)
        frontier = next_cells
    return None
