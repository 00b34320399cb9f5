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
from datetime import date

from projections.counts import FLAG_METRICS, OUTCOME_METRICS
from projections.suppression import Equation, suppress
from schemas.outcome import OutcomeRecord

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


def suppressed_table(counts: Mapping[tuple[str, str, str], int], partition_kinds: Iterable[Partition],
                     max_small: int = 10, hidden_metrics: Iterable[str] = ()
                     ) -> dict[tuple[AreaKey, str], int | None]:
    """Suppress one table of behavioral-health call counts. ``counts`` maps (group kind,
    group, metric) → value, the ``("all", "all")`` group being the total of every
    partition in ``partition_kinds`` (see :func:`table_equations`). Returns every
    published cell → value, None when suppressed. ``hidden_metrics`` are not published
    (not measured) and protected like hidden complements."""
    partitions = tuple(partition_kinds)
    kinds = {k for p in partitions for k in _kinds(p)}
    areas: set[AreaKey] = {(k, a) for k, a, _ in counts if k == "all" or k in kinds}
    areas.add(("all", "all"))
    values: dict[tuple[AreaKey, str], int] = defaultdict(int)
    for (kind, name, m), v in counts.items():
        if (kind, name) in areas and m in PUBLISHED_METRICS:
            values[((kind, name), m)] += v
    for a in areas:
        for flag in FLAG_METRICS:
            values[(a, HIDDEN_PREFIX + flag)] = values[(a, "calls")] - values[(a, flag)]
        for m in PUBLISHED_METRICS:
            values.setdefault((a, m), 0)
    eqs, hidden = table_equations(areas, partitions)
    hidden += [(a, m) for a in areas for m in hidden_metrics]
    hide = suppress(values, eqs, hidden, max_small)
    return {
        (a, m): (None if (a, m) in hide else values[(a, m)]) for a in sorted(areas) for m in PUBLISHED_METRICS
    }


def month_records(period_start: date, counts: Mapping[tuple[str, str, str], int], max_small: int = 10,
                  *, unmeasured: Mapping[str, str] | None = None, vocabulary: str | None = None
                  ) -> list[OutcomeRecord]:
    """Every published cell of one month. ``counts`` maps (area kind, area, metric) → value
    for behavioral-health calls (missing cells are 0); ``unmeasured`` (metric → reason)
    marks what the month's sources cannot express; ``vocabulary`` is stated on every record."""
    unmeasured = dict(unmeasured or {})
    table = suppressed_table(counts, PUBLISHED_AREA_KINDS[1:], max_small, hidden_metrics=tuple(unmeasured))
    out = []
    for (a, m), v in table.items():
        calls = table[(a, "calls")]
        measured = m not in unmeasured
        value = v if measured else None
        share = round(value / calls, 4) if value is not None and calls else None
        out.append(OutcomeRecord.model_validate({  # validates the area kind read from the counts
            "metric": m, "period": period_start.strftime("%Y-%m"), "period_start": period_start,
            "area_kind": a[0], "area": a[1], "value": value, "suppressed": measured and v is None,
            "share": share, "small_cell_max": max_small, "measured": measured,
            "reason": unmeasured.get(m), "vocabulary": vocabulary,
        }))
    return out

