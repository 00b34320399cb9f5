"""Small-cell suppression for published aggregates (CMS cell-size rule), pure.

A published table is a set of cells with non-negative integer values, some *hidden*
(never published, e.g. "calls without a referral"), and linear equations
``total = sum(parts)`` that hold between them (an area's outcomes add up to its calls,
the precincts add up to the whole city ...). An analyst knows the equations.

Rule: no published cell shows a value from 1 to ``max_small`` (primary suppression), and
no suppressed or hidden cell with such a value can be derived from what is published
(complementary suppression):

1. exact derivation — the cell is determined by the equations given the published
   values (checked exactly, by row reduction over the rationals);
2. narrow bounds — an equation whose total is published and whose unknown parts are all
   suppressed reveals their sum; a sum from 1 to ``max_small`` bounds every one of them
   to a small value, so it counts as a derivation too.

:func:`suppress` adds complementary cells (smallest positive value first, totals last)
until neither holds; zero is allowed to be derived (the rule allows showing 0).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

Cell = Hashable


@dataclass(frozen=True)
class Equation:
    """``total == sum(parts)``."""

    total: Cell
    parts: tuple[Cell, ...]

    @property
    def cells(self) -> tuple[Cell, ...]:
        return (self.total, *self.parts)


def derivable(values: Mapping[Cell, int], equations: Iterable[Equation], unknown: set[Cell]) -> set[Cell]:
    """The unknown cells whose value the equations determine exactly, given every other
    cell's value. (Row reduction of the equations restricted to the unknowns: a cell is
    determined iff its unit vector lies in their row space.)"""
    order = sorted(unknown, key=repr)
    col = {c: i for i, c in enumerate(order)}
    matrix: list[list[Fraction]] = []
    for eq in equations:
        row = [Fraction(0)] * len(order)
        touched = False
        for c, coef in ((eq.total, 1), *((p, -1) for p in eq.parts)):
            if c in col:
                row[col[c]] += coef
                touched = True
        if touched and any(row):
            matrix.append(row)
    pivots: list[int] = []
    r = 0
    for c in range(len(order)):
        pivot = next((i for i in range(r, len(matrix)) if matrix[i][c] != 0), None)
        if pivot is None:
            continue
        matrix[r], matrix[pivot] = matrix[pivot], matrix[r]
        lead = matrix[r][c]
        matrix[r] = [v / lead for v in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][c] != 0:
                f = matrix[i][c]
                matrix[i] = [a - f * b for a, b in zip(matrix[i], matrix[r], strict=True)]
        pivots.append(c)
        r += 1
    found = set()
    for i, c in enumerate(pivots):
        if all(v == 0 for j, v in enumerate(matrix[i]) if j != c):
            found.add(order[c])
    return found


def exposed(values: Mapping[Cell, int], equations: list[Equation], unknown: set[Cell], max_small: int
            ) -> tuple[set[Cell], list[Equation]]:
    """(small unknown cells derivable exactly, equations whose revealed sum is small)."""
    small = {c for c in derivable(values, equations, unknown) if 1 <= values.get(c, 0) <= max_small}
    narrow = []
    for eq in equations:
        if eq.total in unknown:
            continue
        hidden = [p for p in eq.parts if p in unknown]
        if hidden and 1 <= sum(values.get(p, 0) for p in hidden) <= max_small:
            narrow.append(eq)
    return small, narrow


def _complement(values: Mapping[Cell, int], eq: Equation, unknown: set[Cell]) -> Cell | None:
    """The cell of ``eq`` to suppress next: smallest positive part, else the total, else a zero part."""
    parts = sorted((p for p in eq.parts if p not in unknown), key=lambda p: (values.get(p, 0) == 0,
                                                                          values.get(p, 0), repr(p)))
    positive = [p for p in parts if values.get(p, 0) > 0]
    if positive:
        return positive[0]
    if eq.total not in unknown:
        return eq.total
    return parts[0] if parts else None


def suppress(values: Mapping[Cell, int], equations: Iterable[Equation], hidden: Iterable[Cell] = (),
             max_small: int = 10) -> set[Cell]:
    """The cells not to publish (primary + complementary), hidden cells included."""
    equations = list(equations)
    unknown = set(hidden) | {c for c, v in values.items() if 1 <= v <= max_small}
    while True:
        changed = False
        # cheap pass: an equation with a single positive unknown gives it away
        for eq in equations:
            hid = [c for c in eq.cells if c in unknown]
            if sum(values.get(c, 0) for c in hid) > 0 and len(hid) == 1:
                extra = _complement(values, eq, unknown)
                if extra is not None:
                    unknown.add(extra)
                    changed = True
        if changed:
            continue
        small, narrow = exposed(values, equations, unknown, max_small)
        if not small and not narrow:
            return unknown
        targets = list(narrow)
        for cell in sorted(small, key=repr):
            targets += [eq for eq in equations if cell in eq.cells]
        progressed = False
        for eq in targets:
            extra = _complement(values, eq, unknown)
            if extra is not None:
                unknown.add(extra)
                progressed = True
                break
        if not progressed:  # everything related is already suppressed
            return unknown
