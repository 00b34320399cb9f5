"""The dashboard's areas of need: each map grain's areas with the report's own cells — a
withheld count stays withheld, and so do its rates."""

from __future__ import annotations

from typing import Any

from hub.entry.api.areas import area_panels, area_rows


def cell(value: int | None, per_calls: float | None = None, per_residents: float | None = None
         ) -> dict[str, Any]:
    return {"value": value, "suppressed": value is None, "rate_per_1000_calls": per_calls,
            "rate_per_1000_residents": per_residents}


DOC = {
    "population": {"source": "census", "year": 2020, "areas": 3},
    "outcomes": {"total": {}, "rows": [
        {"group_kind": "precinct", "group": "WEST", "metrics": {"calls": cell(80, 120.0)}},
        {"group_kind": "beat", "group": "K2", "metrics": {"calls": cell(None), "all_calls": cell(40)}},
        {"group_kind": "beat", "group": "K1", "metrics": {"calls": cell(30, 300.0, 15.0),
                                                          "all_calls": cell(100)}},
    ]},
}


def test_rows_of_a_grain_carry_the_cells_as_published() -> None:
    assert area_rows(DOC, "beat") == [
        {"area": "K1", "calls": 30, "suppressed": False, "all_calls": 100, "rate_per_1000_calls": 300.0,
         "rate_per_1000_residents": 15.0},
        {"area": "K2", "calls": None, "suppressed": True, "all_calls": 40, "rate_per_1000_calls": None,
         "rate_per_1000_residents": None},
    ]


def test_a_panel_per_map_offers_only_measures_with_values() -> None:
    (beat,) = area_panels({"beat": DOC}, ["beat"])
    assert beat["map"] == "/v1/maps/beat" and beat["population"]["year"] == 2020
    assert [m["key"] for m in beat["measures"]] == ["rate_per_1000_residents", "rate_per_1000_calls", "calls"]
    (precinct,) = area_panels({"precinct": DOC}, ["precinct"])
    assert [m["key"] for m in precinct["measures"]] == ["rate_per_1000_calls", "calls"]  # no residents
