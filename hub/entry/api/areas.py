"""The dashboard's areas of need (pure): per configured map grain, each area's published
behavioral-health calls and rates, from a report document — the live report by that grain
(operators, auditors) or the latest release (analysts), whose rows carry every grain.

Nothing is recounted: each value is a cell of the document (``outcomes.rows`` of
``group_kind`` = the grain), withheld cells stay ``None`` with ``suppressed`` true (drawn
hatched), and rates are the cells' own (null whenever their count is withheld)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: the measures the map can colour areas by, in the order the dashboard offers them
MEASURES = (
    ("rate_per_1000_residents", "BH calls per 1,000 residents"),
    ("rate_per_1000_calls", "BH calls per 1,000 calls for service"),
    ("calls", "BH calls"),
)


def area_rows(doc: Mapping[str, Any], grain: str) -> list[dict[str, Any]]:
    """``[{"area", "calls", "suppressed", "all_calls", "rate_per_1000_calls",
    "rate_per_1000_residents"}]`` of the rows of ``grain`` in ``doc`` (by area code)."""
    out = []
    for row in doc["outcomes"]["rows"]:
        if row["group_kind"] != grain:
            continue
        calls = row["metrics"].get("calls") or {}
        service = row["metrics"].get("all_calls") or {}
        out.append({
            "area": row["group"],
            "calls": calls.get("value"),
            "suppressed": bool(calls.get("suppressed")),
            "all_calls": service.get("value"),
            "rate_per_1000_calls": calls.get("rate_per_1000_calls"),
            "rate_per_1000_residents": calls.get("rate_per_1000_residents"),
        })
    return sorted(out, key=lambda r: r["area"])


def area_panels(docs: Mapping[str, Mapping[str, Any]], grains: Iterable[str]) -> list[dict[str, Any]]:
    """One panel per map grain: ``{"grain", "map", "rows", "population", "measures"}`` —
    ``map`` the URL of its GeoJSON (``/v1/maps/<grain>``), ``measures`` the ones with at least
    one published value (rates per resident only with a population table)."""
    panels = []
    for grain in grains:
        doc = docs[grain]
        rows = area_rows(doc, grain)
        measures = [{"key": k, "label": label} for k, label in MEASURES
                    if any(r[k] is not None for r in rows)]
        panels.append({"grain": grain, "map": f"/v1/maps/{grain}", "rows": rows,
                       "population": doc.get("population"), "measures": measures})
    return panels
