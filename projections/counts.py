"""Outcome counts (pure): what one incident contributes to the ``outcome_counts`` table.

A cell is (period kind, period start, area kind, area, call category, behavioral health,
metric). An incident with a received call contributes 1 to each of its cells:

- ``calls``; ``with_outcome`` or ``no_outcome``;
- ``outcome.<primary>`` for exactly one primary outcome (so the sum over
  ``outcome.*`` equals ``with_outcome`` — counts are conserved);
- ``referral_made``, ``connected_to_services``, ``co_responder`` when they hold.

Live, the table is maintained by deltas (new contribution minus old contribution of every
recomputed incident); the deltas telescope, so the table always equals the sum of the
current contributions, whatever the order the facts arrived in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from projections.config import FoldConfig
from schemas.outcome import FLAG_METRICS, PRIMARY_OUTCOMES

PERIOD_KINDS = ("day", "week", "month")
AREA_KINDS = ("all", "precinct", "district", "beat")
UNKNOWN_AREA = "unknown"
ALL_AREA = "all"

OUTCOME_METRICS = tuple(f"outcome.{o}" for o in PRIMARY_OUTCOMES)

Cell = tuple[str, date, str, str, str, bool, str]


def period_start(kind: str, when: datetime, cfg: FoldConfig) -> date:
    """The first day of the day / ISO week / month containing ``when`` (agency time)."""
    return _start(kind, when.astimezone(cfg.zone).date())


def _start(kind: str, local: date) -> date:
    if kind == "day":
        return local
    if kind == "week":
        return local - timedelta(days=local.weekday())
    if kind == "month":
        return local.replace(day=1)
    raise ValueError(f"unknown period kind {kind!r}")


def area_values(row: dict[str, Any]) -> list[tuple[str, str]]:
    return [("all", ALL_AREA)] + [(k, row.get(k) or UNKNOWN_AREA) for k in AREA_KINDS[1:]]


def incident_metrics(row: dict[str, Any]) -> list[str]:
    """The metrics one incident row counts in (empty when no call was received)."""
    if row.get("received_at") is None or row.get("call_category") is None:
        return []
    metrics = ["calls"]
    if row["outcome"] is None:
        metrics.append("no_outcome")
    else:
        metrics += ["with_outcome", f"outcome.{row['outcome']}"]
    metrics += [m for m in FLAG_METRICS if row.get(m)]
    return metrics


def add_contribution(out: dict[Cell, int], row: dict[str, Any], cfg: FoldConfig, sign: int = 1) -> None:
    """Add ``sign`` times one incident row's contribution to ``out`` (in place)."""
    metrics = incident_metrics(row)
    if not metrics:
        return
    bh = bool(row["behavioral_health"])
    category = row["call_category"]
    local = row["received_at"].astimezone(cfg.zone).date()
    areas = area_values(row)
    for pk in PERIOD_KINDS:
        start = _start(pk, local)
        for ak, av in areas:
            for m in metrics:
                cell = (pk, start, ak, av, category, bh, m)
                out[cell] = out.get(cell, 0) + sign


def contribution(row: dict[str, Any], cfg: FoldConfig) -> Counter[Cell]:
    out: Counter[Cell] = Counter()
    add_contribution(out, row, cfg)
    return out


def counts(rows: Iterable[dict[str, Any]], cfg: FoldConfig) -> Counter[Cell]:
    total: Counter[Cell] = Counter()
    for row in rows:
        add_contribution(total, row, cfg)
    return total


def delta(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]], cfg: FoldConfig) -> dict[Cell, int]:
    """Change of the counts when incident rows ``old`` are replaced by ``new`` (no zeros)."""
    d: Counter[Cell] = Counter()
    for row in new:
        add_contribution(d, row, cfg)
    for row in old:
        add_contribution(d, row, cfg, -1)
    return {k: v for k, v in d.items() if v != 0}


def count_row(cell: Cell, value: int) -> dict[str, Any]:
    pk, start, ak, av, cat, bh, metric = cell
    return {"period_kind": pk, "period_start": start, "area_kind": ak, "area": av, "call_category": cat,
            "behavioral_health": bh, "metric": metric, "value": value}
