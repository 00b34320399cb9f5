"""De-identification of aggregate documents before the API publishes them (pure).

The read models hold exact counts; analysts get the CMS cell-size rule applied: every count
from 1 to ``small_cell_max`` is published as ``null``, plus a complementary cell where a
published total would reveal a single suppressed one, and every share or rate computed from
a suppressed count is ``null`` too. Zero is always published. Structure and keys are kept,
so a client reads the same document shape as ``hub report --json``.

The walk is structural: a mapping's integer values form one "row" of cells (``total`` —
when present — is that row's margin); floats in a mapping whose row lost a cell are shares
derived from it and are withheld. Keys in :data:`NOT_COUNTS` are labels or parameters, never
counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.api.roles import suppress_cells, suppress_total

NOT_COUNTS = frozenset(
    {
        "small_cell_max",
        "version",
        "year",
        "month",
        "window_days",
        "connected_window_days",
        "repeat_window_days",
        "threshold",
        "min_contacts",
        "schema_version",
        "offset",
        "partition",
    }
)
TOTAL_KEYS = ("total", "calls", "people", "n")


def _is_count(key: str, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and key not in NOT_COUNTS


def deidentify(doc: Any, small_cell_max: int) -> Any:
    """``doc`` with the cell-size rule applied at every level (a new object)."""
    if isinstance(doc, list):
        return [deidentify(item, small_cell_max) for item in doc]
    if not isinstance(doc, Mapping):
        return doc
    counts = {k: v for k, v in doc.items() if _is_count(k, v)}
    total_key = next((k for k in TOTAL_KEYS if k in counts), None)
    out: dict[str, Any] = {}
    row_lost = False
    if counts:
        cells = {k: v for k, v in counts.items() if k != total_key}
        total = counts.get(total_key) if total_key else None
        published = suppress_cells(cells, small_cell_max, total=total)
        if total_key is not None:
            published[total_key] = suppress_total(counts[total_key], small_cell_max)
        row_lost = any(v is None for v in published.values())
        out.update(published)
    for key, value in doc.items():
        if key in out:
            continue
        if isinstance(value, float):
            out[key] = None if row_lost else value
        else:
            out[key] = deidentify(value, small_cell_max)
    out = {k: out[k] for k in doc}  # keep the source's key order
    return out


def deidentify_report(report: Mapping[str, Any], small_cell_max: int) -> dict[str, Any]:
    doc = deidentify(report, small_cell_max)
    doc["suppression"] = {"small_cell_max": small_cell_max, "rule": "values 1..max published as null"}
    return doc


deidentify_funnel = deidentify_report
deidentify_repeat = deidentify_report
