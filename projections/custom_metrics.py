"""County metrics in the outcome tables (pure): the cells of each metric of the county's
definitions (:mod:`hub.kernel.custom_fields`) and what the small-cell rule must know to
suppress them together with the built-in cells.

Each metric ``<id>`` adds, per group of a table (the jurisdiction, each area or month...),
two published cells — ``custom.<id>`` (the numerator's calls; its share is of the
denominator) and ``custom.<id>.denominator`` (share of ``calls``) — and a hidden complement
``not.custom.<id>`` (denominator minus numerator), with the equations an analyst knows:
``denominator = numerator + complement`` and, for every partition, the groups add up to the
jurisdiction.

Custom cells overlap built-in cells in ways the table's equations do not say (holds among
unsheltered people are part of the holds), so alone those equations would let an analyst
subtract a custom cell from a built-in one unnoticed. The table therefore gets **atoms**:
per group, the calls are split by the value of every built-in dimension a metric names
(primary outcome, referral made, connected to services, co-responder — the dimensions of
the published cells) and by the *state* of each metric (outside the denominator, in the
denominator only, in the numerator). Every custom cell and every coupled built-in cell is
the sum of its atoms, and every atom of the jurisdiction is the sum of its atoms in each
partition's groups. Atoms are hidden cells, so the rule keeps any of them from 1 to 10 from
being derived, and so are the small **parts** — a conjunction of those dimensions (e.g.
"holds, not co-responder, not in the numerator") whose count is from 1 to
``small_cell_max``. Empty atoms are left out, i.e. treated as known to be 0 (an analyst
cannot know that, so the rule errs on the side of withholding).

Dimensions a metric does not name need no atoms: published cells that depend on disjoint
sets of dimensions only share their sums over those dimensions (the calls of a group), so
nothing about one can be derived from the other beyond what the table's equations say.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.kernel.custom_fields import BUILTIN_FIELDS, Definitions, MetricDef
from projections.counts import area_values, incident_metrics
from projections.suppression import Equation
from schemas.outcome import FLAG_METRICS, PRIMARY_OUTCOMES

CUSTOM_PREFIX = "custom."
DENOMINATOR_SUFFIX = ".denominator"
NOT_PREFIX = "not."
#: built-in fields that are dimensions of published cells (outcome.*, the flags)
COUPLED_FIELDS = ("outcome", *FLAG_METRICS)
NO_OUTCOME = "none"
#: a call's state for one metric
OUTSIDE, DENOMINATOR_ONLY, IN_NUMERATOR = 0, 1, 2

Group = tuple[str, str]
Cell = tuple[Group, str]
Atom = tuple[tuple[Any, ...], tuple[int, ...]]  # (coupled values, metric states)


def numerator_metric(mid: str) -> str:
    return f"{CUSTOM_PREFIX}{mid}"


def denominator_metric(mid: str) -> str:
    return f"{CUSTOM_PREFIX}{mid}{DENOMINATOR_SUFFIX}"


def complement_metric(mid: str) -> str:
    return f"{NOT_PREFIX}{CUSTOM_PREFIX}{mid}"


def metric_names(defs: Definitions) -> list[str]:
    """The published metric names of every county metric, in definition order."""
    return [n for m in defs.metrics for n in (numerator_metric(m.id), denominator_metric(m.id))]


def is_extension_metric(metric: str) -> bool:
    """Whether a cell's metric is one an :class:`Extension` adds (county cells, their
    complements, atoms and small parts), not a built-in one."""
    return metric.startswith((CUSTOM_PREFIX, NOT_PREFIX + CUSTOM_PREFIX, "atom[", "part["))


def share_base(metric: str) -> str:
    """The cell a metric's share is of: a county numerator's denominator, else ``calls``."""
    if metric.startswith(CUSTOM_PREFIX) and not metric.endswith(DENOMINATOR_SUFFIX):
        return metric + DENOMINATOR_SUFFIX
    return "calls"


def state(defs: Definitions, metric: MetricDef, row: Mapping[str, Any]) -> int:
    """:data:`OUTSIDE`, :data:`DENOMINATOR_ONLY` or :data:`IN_NUMERATOR` for one call."""
    if not defs.matches(metric.denominator, row):
        return OUTSIDE
    return IN_NUMERATOR if defs.matches(metric.numerator, row) else DENOMINATOR_ONLY


def metric_counts(defs: Definitions, rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """metric id → (numerator, denominator) over ``rows`` (numerator ≤ denominator)."""
    out: dict[str, tuple[int, int]] = {}
    rows = list(rows)
    for m in defs.metrics:
        states = [state(defs, m, r) for r in rows]
        out[m.id] = (states.count(IN_NUMERATOR), states.count(IN_NUMERATOR) + states.count(DENOMINATOR_ONLY))
    return out


def unmeasured_custom(defs: Definitions, unmeasured: Mapping[str, str]) -> dict[str, str]:
    """The county metrics (both cells) whose filters name a built-in metric the sources cannot
    express (a vocabulary's ``not_measured``): they are not measured either."""
    out: dict[str, str] = {}
    for m in defs.metrics:
        reasons = []
        for flt in (m.denominator, m.numerator):
            for name, cond in flt.items():
                if name == "outcome":
                    names = [f"outcome.{v}" for v in sorted(cond.values or (), key=str)]
                elif name in FLAG_METRICS:
                    names = [name]
                else:
                    names = []
                reasons += [unmeasured[n] for n in names if n in unmeasured and unmeasured[n] not in reasons]
        if reasons:
            reason = "; ".join(reasons)
            out[numerator_metric(m.id)] = reason
            out[denominator_metric(m.id)] = reason
    return out


def row_columns(defs: Definitions) -> tuple[str, ...]:
    """The incident read model's columns the metrics' filters read beyond the coupled ones
    (``outcome`` and the flags, always read): built-in columns by name, ``custom`` for the
    county's fields. Names come from :data:`hub.kernel.custom_fields.BUILTIN_FIELDS` or are
    ``custom`` — never from the definitions file's text."""
    named = {f for m in defs.metrics for f in m.fields}
    builtin = [f for f in BUILTIN_FIELDS if f in named and f not in COUPLED_FIELDS]
    return (*builtin, *(("custom",) if named - set(BUILTIN_FIELDS) else ()))


def coupled_fields(defs: Definitions) -> tuple[str, ...]:
    """The built-in dimensions of published cells that some metric names."""
    named = {f for m in defs.metrics for f in m.fields}
    return tuple(f for f in COUPLED_FIELDS if f in named)


def _coupled_value(row: Mapping[str, Any], name: str) -> Any:
    if name == "outcome":
        return row.get("outcome") or NO_OUTCOME
    return bool(row.get(name))


@dataclass(frozen=True)
class Extension:
    """What a table of county metrics adds to a suppressed table
    (:func:`projections.outcomes.suppressed_table`): the metrics (ids), every added cell's
    value — custom cells per group, atoms, small parts — the equations linking atoms to the
    cells, and the hidden cells (atoms, parts). The custom cells' own equations
    (denominator = numerator + complement, partitions) are the table's to add, for every
    group it holds."""

    metrics: tuple[str, ...]
    values: dict[Cell, int]
    equations: tuple[Equation, ...]
    hidden: frozenset[Cell]

    def custom_cells(self, group: Group) -> list[tuple[Cell, bool]]:
        """(cell, published) of every county metric in ``group``."""
        out = []
        for mid in self.metrics:
            out += [((group, numerator_metric(mid)), True), ((group, denominator_metric(mid)), True),
                    ((group, complement_metric(mid)), False)]
        return out


def _atom_name(dims: Sequence[str], ids: Sequence[str], atom: Atom) -> str:
    values, states = atom
    parts = [f"{d}={v}" for d, v in zip(dims, values, strict=True)]
    parts += [f"{i}={s}" for i, s in zip(ids, states, strict=True)]
    return "atom[" + ",".join(parts) + "]"


def _builtin_sets(dims: Sequence[str], atoms: Iterable[Atom]) -> dict[str, set[Atom]]:
    """The coupled built-in cells of a group as sets of its atoms (``calls`` always)."""
    atoms = list(atoms)
    out: dict[str, set[Atom]] = {"calls": set(atoms)}
    for i, d in enumerate(dims):
        if d == "outcome":
            out["no_outcome"] = {a for a in atoms if a[0][i] == NO_OUTCOME}
            out["with_outcome"] = {a for a in atoms if a[0][i] != NO_OUTCOME}
            for o in PRIMARY_OUTCOMES:
                out[f"outcome.{o}"] = {a for a in atoms if a[0][i] == o}
        else:
            out[d] = {a for a in atoms if a[0][i]}
            out[NOT_PREFIX + d] = {a for a in atoms if not a[0][i]}
    return out


def _custom_sets(ids: Sequence[str], atoms: Iterable[Atom]) -> dict[str, set[Atom]]:
    atoms = list(atoms)
    out: dict[str, set[Atom]] = {}
    for k, mid in enumerate(ids):
        out[numerator_metric(mid)] = {a for a in atoms if a[1][k] == IN_NUMERATOR}
        out[denominator_metric(mid)] = {a for a in atoms if a[1][k] != OUTSIDE}
        out[complement_metric(mid)] = {a for a in atoms if a[1][k] == DENOMINATOR_ONLY}
    return out


_STATE_OPTIONS: tuple[frozenset[int], ...] = tuple(
    frozenset(c) for n in (1, 2) for c in itertools.combinations((OUTSIDE, DENOMINATOR_ONLY, IN_NUMERATOR), n)
)


Test = Callable[[Atom], bool]


def _value_is(i: int, value: Any) -> Test:
    return lambda a: a[0][i] == value


def _value_not(i: int, value: Any) -> Test:
    return lambda a: a[0][i] != value


def _state_in(k: int, allowed: frozenset[int]) -> Test:
    return lambda a: a[1][k] in allowed


def _options(dim: str, atoms: Iterable[Atom], i: int) -> list[tuple[str, Test]]:
    """(label, test) of the conditions a part can put on coupled dimension ``i``."""
    if dim == "outcome":
        present = sorted({a[0][i] for a in atoms})
        return [*((f"outcome={o}", _value_is(i, o)) for o in present),
                ("outcome=any", _value_not(i, NO_OUTCOME))]
    return [(f"{dim}=yes", _value_is(i, True)), (f"{dim}=no", _value_is(i, False))]


def _parts(dims: Sequence[str], ids: Sequence[str], counts: Mapping[Atom, int], max_small: int,
           known: set[frozenset[Atom]]) -> list[tuple[str, frozenset[Atom]]]:
    """The small parts of one group: conjunctions of a condition (or none) per dimension whose
    atoms sum from 1 to ``max_small`` and that are neither one atom nor a set already known."""
    atoms = list(counts)
    axes: list[list[tuple[str, Test]]] = [_options(d, atoms, i) for i, d in enumerate(dims)]
    for k, mid in enumerate(ids):
        axes.append([(f"{mid}=" + "/".join(map(str, sorted(o))), _state_in(k, o)) for o in _STATE_OPTIONS])
    found: list[tuple[str, frozenset[Atom]]] = []
    seen = set(known)
    visited: set[tuple[int, frozenset[Atom]]] = set()  # the same atoms reached by another path

    def walk(axis: int, chosen: list[str], members: frozenset[Atom]) -> None:
        if not members or (axis, members) in visited:
            return
        visited.add((axis, members))
        if axis == len(axes):
            total = sum(counts[a] for a in members)
            if chosen and len(members) > 1 and 1 <= total <= max_small and members not in seen:
                seen.add(members)
                found.append(("part[" + ",".join(chosen) + "]", members))
            return
        walk(axis + 1, chosen, members)  # no condition on this axis
        for label, test in axes[axis]:
            walk(axis + 1, [*chosen, label], frozenset(a for a in members if test(a)))

    walk(0, [], frozenset(atoms))
    return found


def extension(defs: Definitions, rows: Iterable[Mapping[str, Any]],
              groups_of: Callable[[Mapping[str, Any]], Iterable[Group]],
              partitions: Sequence[tuple[str, ...]], max_small: int) -> Extension | None:
    """The county metrics' :class:`Extension` of one table of ``rows`` (behavioral-health
    incident rows; a row may carry a weight ``n``, e.g. a grouped SQL row): ``groups_of``
    gives a row's groups (``("all", "all")`` among them) and ``partitions`` the group kinds
    whose groups add up to the jurisdiction. None without metrics."""
    if not defs.metrics:
        return None
    ids = tuple(m.id for m in defs.metrics)
    dims = coupled_fields(defs)
    atoms: dict[Group, Counter[Atom]] = {}
    for row in rows:
        if not incident_metrics(dict(row)):
            continue
        atom: Atom = (tuple(_coupled_value(row, d) for d in dims),
                      tuple(state(defs, m, row) for m in defs.metrics))
        for g in groups_of(row):
            atoms.setdefault(g, Counter())[atom] += int(row.get("n", 1))
    atoms.setdefault(("all", "all"), Counter())
    values: dict[Cell, int] = {}
    eqs: list[Equation] = []
    hidden: set[Cell] = set()
    for g, counts in sorted(atoms.items()):
        name = {a: (g, _atom_name(dims, ids, a)) for a in counts}
        for a, n in counts.items():
            values[name[a]] = n
            hidden.add(name[a])
        custom = _custom_sets(ids, counts)
        builtin = _builtin_sets(dims, counts)
        for metric, members in custom.items():  # first: the complement chosen is a custom cell
            values[(g, metric)] = sum(counts[a] for a in members)
            eqs.append(Equation((g, metric), tuple(sorted(name[a] for a in members))))
        for metric, members in sorted(builtin.items(), key=lambda kv: kv[0] == "calls"):
            eqs.append(Equation((g, metric), tuple(sorted(name[a] for a in members))))
        known = {frozenset(s) for s in (*custom.values(), *builtin.values())}
        for label, part in _parts(dims, ids, counts, max_small, known):
            cell = (g, label)
            values[cell] = sum(counts[a] for a in part)
            hidden.add(cell)
            eqs.append(Equation(cell, tuple(sorted(name[a] for a in part))))
    everything = atoms[("all", "all")]
    for kinds in partitions:
        in_partition = sorted(g for g in atoms if g[0] in kinds)
        for a in everything:
            label = _atom_name(dims, ids, a)
            parts = tuple((g, label) for g in in_partition if a in atoms[g])
            eqs.append(Equation((("all", "all"), label), parts))
    return Extension(ids, values, tuple(eqs), frozenset(hidden))


def custom_equations(ids: Sequence[str], groups: Iterable[Group], partitions: Sequence[tuple[str, ...]]
                     ) -> list[Equation]:
    """The equations of the county cells an analyst knows: per group, denominator = numerator
    + complement; per partition, its groups' cells add up to the jurisdiction's."""
    groups = sorted(set(groups) | {("all", "all")})
    eqs: list[Equation] = []
    for mid in ids:
        n, d, c = numerator_metric(mid), denominator_metric(mid), complement_metric(mid)
        for g in groups:
            eqs.append(Equation((g, d), ((g, n), (g, c))))
        for kinds in partitions:
            members = [g for g in groups if g[0] in kinds]
            if members:
                for m in (n, d, c):
                    eqs.append(Equation((("all", "all"), m), tuple((g, m) for g in members)))
    return eqs


def attribute_cells(values: Mapping[Any, int], ids: Sequence[str], groups: Iterable[Group],
                    attribute_max: int) -> set[Cell]:
    """The zero-cell rule for county metrics: when a group's denominator is from 1 to
    ``attribute_max`` and the numerator equals it (or is 0), the part equal to the
    denominator is protected — every call of a small group has (or lacks) the attribute."""
    out: set[Cell] = set()
    for g in groups:
        for mid in ids:
            total = values.get((g, denominator_metric(mid)), 0)
            if 1 <= total <= attribute_max:
                for m in (numerator_metric(mid), complement_metric(mid)):
                    if values.get((g, m), 0) == total:
                        out.add((g, m))
    return out


def release_groups(row: Mapping[str, Any]) -> list[Group]:
    """A call's groups in a release table: the jurisdiction, its precinct and its district
    (``unknown`` when not reported), as :func:`projections.counts.area_values` counts them."""
    return [g for g in area_values(dict(row)) if g[0] in ("all", "precinct", "district")]


def section(defs: Definitions) -> dict[str, Any]:
    """The report's ``custom_metrics`` section: the definitions' label and digest and each
    metric's definition with the names of its cells."""
    return {
        "definitions": defs.label,
        "digest": defs.digest,
        "metrics": [
            {**m.describe(), "metric": numerator_metric(m.id), "denominator_metric": denominator_metric(m.id)}
            for m in defs.metrics
        ],
    }



def headline_cells(doc: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, jurisdiction cell) of every county metric of a report document (the live
    report's or a release's), for the text report; none without county metrics."""
    total = doc.get("outcomes", {}).get("total", {})
    return [(m["label"], total.get(m["metric"]) or {"value": None, "suppressed": True})
            for m in (doc.get("custom_metrics") or {}).get("metrics", [])]
