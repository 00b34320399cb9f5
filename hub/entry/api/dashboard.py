"""The dashboard's view (pure): chart-ready series built from the outcome report documents
of :meth:`projections.queries.ReadModelReader.report` — already de-identified — and the
pipeline status.

Nothing is recounted here: every number on the dashboard is a cell of the same report
``hub report --json`` prints (by month, by area), so the page, the API and the terminal
always agree. A suppressed cell stays ``None`` (drawn hatched, labelled "suppressed"); a
metric the sources cannot express is a card marked ``measured: false`` with its reason
(shown "not measured", never 0 %). The view states the vocabulary the numbers used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from projections.reporting import FORCE_TYPES
from schemas.demographics import VOCABULARIES

#: Headline cards, in the order of the seed's published metrics (COAST, Colorado).
HEADLINE = (
    ("no_enforcement", "BH calls ending with no enforcement action", "ABQ COAST 40%"),
    ("voluntary_transport", "BH calls with a voluntary mental-health transport", "ABQ COAST 33%"),
    ("enforcement", "BH calls with enforcement action (arrest or citation)", "ABQ COAST 3%"),
    ("repeat_three_plus_enrolled", "people seen 3+ times enrolled in BH services", "Colorado 68.8%"),
)
#: Outcome series drawn in the stacked charts (primary outcomes, most severe last).
OUTCOME_SERIES = (
    "outcome.no_enforcement",
    "outcome.voluntary_transport",
    "outcome.emergency_department",
    "outcome.involuntary_hold",
    "outcome.arrest_or_citation",
    "outcome.other",
)
#: grains drawn on the map, not as bars (:mod:`hub.entry.api.areas`)
FINE_GRAINS = ("sector", "beat")
FUNNEL_STAGES = ("requested", "delivered", "accepted", "completed")
REPEAT_ROWS = (
    ("people", "1+ contacts"),
    ("two_plus", "2+ contacts"),
    ("three_plus", "3+ contacts"),
    ("three_plus_enrolled", "3+ and enrolled"),
)


def _value(cell: Mapping[str, Any] | None) -> int | None:
    return None if cell is None else cell.get("value")


def headline_cards(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    head = report["headline"]
    repeat = report["repeat_encounters"]
    cards = []
    for key, label, benchmark in HEADLINE:
        cell = head[key]
        denominator = repeat["three_plus"] if key == "repeat_three_plus_enrolled" else head["calls"]
        cards.append(
            {
                "key": key,
                "label": label,
                "benchmark": benchmark,
                "share": cell.get("share"),
                "numerator": _value(cell),
                "denominator": _value(denominator),
                "measured": cell.get("measured", True),
                "reason": cell.get("reason"),
            }
        )
    return cards


def custom_cards(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One card per county metric (:mod:`projections.custom_metrics`) of the report's
    jurisdiction cells: its share of the denominator, as published (suppressed or not
    measured stays so)."""
    section = report.get("custom_metrics") or {}
    total = report.get("outcomes", {}).get("total", {})
    cards = []
    for m in section.get("metrics", []):
        cell = total.get(m["metric"]) or {}
        cards.append(
            {
                "key": m["metric"],
                "label": m["label"],
                "benchmark": None,
                "share": cell.get("share"),
                "numerator": _value(cell),
                "denominator": _value(total.get(m["denominator_metric"])),
                "measured": cell.get("measured", True),
                "reason": cell.get("reason"),
            }
        )
    return cards


def grouped_series(outcomes: Mapping[str, Any]) -> dict[str, Any]:
    """``{"categories": [group...], "series": {outcome: [value...]}}`` of a report's
    ``outcomes`` section grouped by week, month or area (rows in the section's order)."""
    rows = outcomes["rows"]
    categories = [row["group"] for row in rows]
    series = {
        metric.removeprefix("outcome."): [_value(row["metrics"].get(metric)) for row in rows]
        for metric in OUTCOME_SERIES
    }
    calls = [_value(row["metrics"].get("calls")) for row in rows]
    return {"categories": categories, "series": series, "calls": calls}


def funnel_rows(funnel: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"label": stage, "value": _value(funnel[stage]), "share": funnel[stage].get("share")}
        for stage in FUNNEL_STAGES
    ]


def repeat_rows(repeat: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"label": label, "value": _value(repeat[key]), "share": repeat[key].get("share")}
        for key, label in REPEAT_ROWS
    ]


#: the use-of-force table's columns: (metric, label); shares of calls for ``force_recorded``,
#: of calls with force recorded for the others
FORCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("calls", "BH calls"),
    ("force_recorded", "use of force recorded"),
    ("no_force", "no force"),
    ("force_used", "force used"),
    *((f"force.{t}", t.replace("_", " ")) for t in FORCE_TYPES),
)
DEMOGRAPHIC_LABELS = {"race": "Race", "ethnicity": "Ethnicity", "gender": "Gender", "age_band": "Age band"}


def _shown(cell: Mapping[str, Any] | None) -> dict[str, Any]:
    """A cell as a panel draws it: ``value`` None with ``withheld`` true when suppressed (never
    0); ``withheld`` false and ``value`` None when the month's release did not carry it."""
    if not cell:
        return {"value": None, "share": None, "withheld": False}
    return {"value": cell.get("value"), "share": cell.get("share"), "withheld": bool(cell.get("suppressed"))}


def _force_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"label": str(r["group"]), "kind": r["group_kind"],
         "cells": {m: _shown(r["metrics"].get(m)) for m, _ in FORCE_COLUMNS}}
        for r in rows
    ]


def force_panel(by_month: Mapping[str, Any] | None, by_area: Mapping[str, Any] | None) -> dict[str, Any]:
    """The use-of-force panel from the ``use_of_force`` sections of a report by month and a
    report by area (or the released ones): total, by outcome, by period, by area — the cells
    as published."""
    month = by_month or {}
    area = by_area or {}
    total = month.get("total") or {}
    return {
        "columns": [{"key": m, "label": label} for m, label in FORCE_COLUMNS],
        "reason": month.get("reason"),
        "groups": [
            {"key": "total", "title": "All BH calls", "rows": _force_rows(
                [{"group_kind": "all", "group": "all", "metrics": total}] if total else [])},
            {"key": "outcome", "title": "By outcome", "rows": _force_rows(month.get("by_outcome") or [])},
            {"key": "period", "title": "By month", "rows": _force_rows(month.get("rows") or [])},
            {"key": "area", "title": "By area", "rows": _force_rows(area.get("rows") or [])},
        ],
    }


def demographics_panel(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The demographics panel from a report's ``demographics`` section: calls by race,
    ethnicity, gender and age band, every category of each vocabulary (withheld cells
    withheld), and the calls whose person's sources disagree."""
    section = section or {}
    total = section.get("total") or {}
    rows = section.get("rows") or []
    return {
        "reason": section.get("reason"),
        "sources": list(section.get("sources") or []),
        "calls": _shown(total.get("calls")),
        "conflicting": _shown(total.get("conflicting")),
        "dimensions": [
            {"key": d, "label": DEMOGRAPHIC_LABELS.get(d, d),
             "rows": [{"label": str(r["group"]), **_shown(r["metrics"].get("calls"))}
                      for r in rows if r["group_kind"] == d]}
            for d in VOCABULARIES
        ],
    }


def pipeline_view(
    lag: Mapping[str, Any], dead_letters: Mapping[str, int], verification: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "projection_lag": int(lag.get("total", 0)),
        "dead_letters": dict(dead_letters),
        "dead_letters_total": sum(dead_letters.values()),
        "verification": None
        if verification is None
        else {
            "ok": bool(verification["ok"]),
            "breaks": verification["breaks"],
            "checked_at": verification["checked_at"],
            "records": verification.get("records"),
        },
    }


def dashboard_view(
    by_month: Mapping[str, Any],
    by_area: Mapping[str, Any],
    by_week: Mapping[str, Any],
    pipeline: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything the page draws. ``by_month`` / ``by_area``: report documents for the same
    period (their headline, funnel and repeat sections are identical period totals; the county
    metrics' cards are ``by_area``'s jurisdiction cells);
    ``by_week``: the weekly ``outcomes`` section of the same period. Use of force by month
    and by outcome and demographics come from ``by_month``, use of force by area from
    ``by_area``."""
    return {
        "small_cell_max": by_month["small_cell_max"],
        "vocabulary": (by_month.get("vocabulary") or {}).get("label"),
        "period": {"from": by_month.get("from") or "first call", "to": by_month.get("to") or "latest call"},
        "headline": headline_cards(by_month),
        "custom_metrics": custom_cards(by_area),
        "custom_definitions": (by_area.get("custom_metrics") or {}).get("definitions"),
        "by_month": grouped_series(by_month["outcomes"]),
        "by_week": grouped_series(by_week),
        # the bars by area are the coarse grains (sectors and beats are on the map)
        "by_area": grouped_series({"rows": [r for r in by_area["outcomes"]["rows"]
                                            if r["group_kind"] not in FINE_GRAINS]}),
        "funnel": funnel_rows(by_month["referral_funnel"]),
        "repeat": repeat_rows(by_month["repeat_encounters"]),
        "use_of_force": force_panel(by_month.get("use_of_force"), by_area.get("use_of_force")),
        "demographics": demographics_panel(by_month.get("demographics")),
        "pipeline": dict(pipeline),
    }
