"""The outcome topic's record and how it is built from the counts (pure).

Analysts subscribe to ``<prefix>.outcomes.counts`` (compacted). Each record is one
published cell: (metric, month, area) of behavioral-health calls, de-identified (counts
only, no ids) and small-cell suppressed across the whole month's table — every area of
every area kind, every metric, and the hidden complements (e.g. calls *without* a
referral) — so no value from 1 to 10 shows or can be derived from totals or shares.
The record key is ``metric|period|area`` (:meth:`OutcomeRecord.key`); publishing the same
state twice produces the same records, so compaction keeps exactly the latest state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from projections import custom_metrics
from projections.counts import FLAG_METRICS, OUTCOME_METRICS
from projections.suppression import Equation, derivable, forced_zero, suppress

PUBLISHED_METRICS = ("calls", "with_outcome", "no_outcome", *OUTCOME_METRICS, *FLAG_METRICS)
HIDDEN_PREFIX = "not."
PUBLISHED_AREA_KINDS = ("all", "precinct", "district")
AreaKey = tuple[str, str]  # (area kind, area)


Partition = str | tuple[str, ...]  # group kinds whose groups together add up to the total


def _kinds(partition: Partition) -> tuple[str, ...]:
    return (partition,) if isinstance(partition, str) else tuple(partition)


def table_equations(areas: Iterable[AreaKey], partition_kinds: Iterable[Partition] = PUBLISHED_AREA_KINDS[1:]
                    ) -> tuple[list[Equation], list[tuple[AreaKey, str]]]:
    """The equations an analyst knows for one table, and its hidden cells. Cells are
    (area key, metric); for each partition in ``partition_kinds`` — a group kind, or a
    tuple of kinds whose groups are disjoint and together cover every call (e.g. areas
    at the grain each call was published at: precinct, else district) — its groups add
    up to the ``("all", "all")`` group."""
    areas = sorted(set(areas) | {("all", "all")})
    eqs: list[Equation] = []
    hidden: list[tuple[AreaKey, str]] = []
    metrics = [*PUBLISHED_METRICS, *(HIDDEN_PREFIX + f for f in FLAG_METRICS)]
    for a in areas:
        eqs.append(Equation((a, "calls"), ((a, "with_outcome"), (a, "no_outcome"))))
        eqs.append(Equation((a, "with_outcome"), tuple((a, m) for m in OUTCOME_METRICS)))
        for flag in FLAG_METRICS:
            eqs.append(Equation((a, "calls"), ((a, flag), (a, HIDDEN_PREFIX + flag))))
            hidden.append((a, HIDDEN_PREFIX + flag))
    for partition in partition_kinds:
        kinds = _kinds(partition)
        members = [a for a in areas if a[0] in kinds]
        if members:
            for m in metrics:
                eqs.append(Equation((("all", "all"), m), tuple((a, m) for a in members)))
    return eqs, hidden


Cell = tuple[AreaKey, str]


@dataclass(frozen=True)
class SuppressedTable:
    """One suppressed table: every cell's true value (``values``, hidden complements
    included), the cells withheld (``hidden``: suppressed, hidden or not measured), and what
    an analyst knows from it (``known``: every shown cell and every withheld cell the
    equations determine exactly — values of 0 or above ``max_small`` only)."""

    values: dict[Cell, int]
    hidden: frozenset[Cell]
    known: dict[Cell, int]
    published: tuple[Cell, ...]
    #: the equations an analyst knows and the cells that must stay underivable whatever their
    #: value (changes since earlier releases, the zero-cell rule): what a table that extends
    #: this one (:mod:`projections.areas`) must keep safe
    equations: tuple[Equation, ...] = ()
    protected: frozenset[Cell] = frozenset()

    def shown(self) -> dict[Cell, int | None]:
        """Every published cell → value, None when withheld."""
        return {c: (None if c in self.hidden else self.values[c]) for c in self.published}


#: the flags that are attributes of the person on the call (a co-responder's presence is the
#: program's, not the person's: a month where every call had one discloses nothing about anyone)
PERSON_FLAGS = ("referral_made", "not.referral_made", "connected_to_services", "not.connected_to_services")


def attribute_cells(values: Mapping[Any, int], equations: Iterable[Equation], attribute_max: int
                    ) -> set[Cell]:
    """The zero-cell rule: a part equal to a total from 1 to ``attribute_max`` in an outcome
    equation or a person flag's equation (every call of a small group has the outcome / a
    referral / a connection to services, or none has) would disclose an attribute of the whole
    group; such parts are protected. Area equations (a group is where calls are),
    ``calls = with_outcome + no_outcome`` and the co-responder flag are not attribute
    equations."""
    out: set[Cell] = set()
    for eq in equations:
        metric = eq.total[1]  # type: ignore[index]  # cells of these tables are (area, metric)
        parts = [p[1] for p in eq.parts]  # type: ignore[index]
        attribute = (metric == "with_outcome" and all(m.startswith("outcome.") for m in parts)) or (
            metric == "calls" and any(m in PERSON_FLAGS for m in parts))
        total = values.get(eq.total, 0)
        if attribute and 1 <= total <= attribute_max:
            out |= {cast(Cell, p) for p in eq.parts if values.get(p, 0) == total}
    return out


def suppressed_table(counts: Mapping[tuple[str, str, str], int], partition_kinds: Iterable[Partition],
                     max_small: int = 10, hidden_metrics: Iterable[str] = (), *,
                     known_before: Mapping[Cell, Iterable[int]] | None = None, attribute_max: int = 0,
                     extension: custom_metrics.Extension | None = None) -> SuppressedTable:
    """Suppress one table of behavioral-health call counts. ``counts`` maps (group kind,
    group, metric) → value, the ``("all", "all")`` group being the total of every
    partition in ``partition_kinds`` (see :func:`table_equations`). ``hidden_metrics`` are
    not published (not measured) and protected like hidden complements.

    Releases: ``known_before`` is every value analysts knew of each cell from earlier
    releases (:attr:`SuppressedTable.known` of each); a cell whose value differs by 1 to
    ``max_small`` from any of them is protected (the change itself would be a small count,
    whichever two releases are subtracted). ``attribute_max``: the
    zero-cell rule (:func:`attribute_cells`; 0 = off). ``extension``: the county metrics'
    cells, atoms and equations (:mod:`projections.custom_metrics`), suppressed in the same
    table; hidden metrics named there (not measured) are withheld like built-in ones."""
    partitions = tuple(partition_kinds)
    kinds = {k for p in partitions for k in _kinds(p)}
    areas: set[AreaKey] = {(k, a) for k, a, _ in counts if k == "all" or k in kinds}
    areas.add(("all", "all"))
    values: dict[Cell, int] = defaultdict(int)
    for (kind, name, m), v in counts.items():
        if (kind, name) in areas and m in PUBLISHED_METRICS:
            values[((kind, name), m)] += v
    for a in areas:
        for flag in FLAG_METRICS:
            values[(a, HIDDEN_PREFIX + flag)] = values[(a, "calls")] - values[(a, flag)]
    before = known_before or {}
    for c in before:  # a cell that vanished (an area lost its calls) is 0 now
        if c[0] != ("all", "all") and c[0][0] in kinds:
            areas.add(c[0])
            values.setdefault(c, 0)
    for a in areas:
        for m in (*PUBLISHED_METRICS, *(HIDDEN_PREFIX + f for f in FLAG_METRICS)):
            values.setdefault((a, m), 0)
    eqs, hidden = table_equations(areas, partitions)
    published_custom: list[Cell] = []
    if extension is not None:
        values.update(extension.values)
        for a in sorted(areas):
            for c, shown in extension.custom_cells(a):
                values.setdefault(c, 0)
                if shown:
                    published_custom.append(c)
                else:
                    hidden.append(c)
        eqs += custom_metrics.custom_equations(extension.metrics, areas, [_kinds(p) for p in partitions])
        eqs += extension.equations
        hidden += sorted(extension.hidden, key=repr)
    hidden += [(a, m) for a in areas for m in hidden_metrics]
    protect = {
        c for c, olds in before.items() if any(1 <= abs(values.get(c, 0) - v) <= max_small for v in olds)
    }
    if attribute_max:
        protect |= attribute_cells(values, eqs, attribute_max)
        if extension is not None:
            protect |= custom_metrics.attribute_cells(values, extension.metrics, areas, attribute_max)
    hide = suppress(values, eqs, hidden, max_small, protect, nonnegative=True)
    zeros = forced_zero(values, eqs, hide)
    determined = derivable(values, eqs, hide - zeros) | zeros
    known = {c: v for c, v in values.items() if c not in hide or c in determined}
    published = (*((a, m) for a in sorted(areas) for m in PUBLISHED_METRICS), *published_custom)
    return SuppressedTable(dict(values), frozenset(cast(set[Cell], hide)), known, published, tuple(eqs),
                           frozenset(protect))
