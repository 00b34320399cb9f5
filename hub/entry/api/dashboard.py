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

from collections.abc import Mapping
from typing import Any

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
    ``by_week``: the weekly ``outcomes`` section of the same period."""
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
        "pipeline": dict(pipeline),
    }
