"""Pure parts of the dashboard view and the demo: series built cell for cell from the
report, demo settings isolation, the connector configuration."""

from __future__ import annotations

import json
from io import StringIO

from rich.console import Console

from hub.devtools.demo import component_configs, demo_env, demo_settings, report_table
from hub.entry.api.dashboard import (
    OUTCOME_SERIES,
    dashboard_view,
    demographics_panel,
    force_panel,
    pipeline_view,
)
from hub.kernel.settings import Settings


def cell(v: int | None, share: float | None = None) -> dict:
    return {"value": v, "share": share, "suppressed": v is None}


def report(by: str | None, rows: list[tuple[str, dict[str, int | None]]]) -> dict:
    return {
        "from": None,
        "to": None,
        "by": by,
        "small_cell_max": 10,
        "headline": {
            "calls": cell(200),
            "no_enforcement": cell(80, 0.4),
            "voluntary_transport": cell(66, 0.33),
            "enforcement": cell(None),
            "repeat_three_plus_enrolled": cell(22, 0.6875),
        },
        "repeat_encounters": {
            "people": cell(150),
            "two_plus": cell(60, 0.4),
            "three_plus": cell(32, 0.2133),
            "three_plus_enrolled": cell(22, 0.6875),
        },
        "referral_funnel": {
            "requested": cell(50, 1.0),
            "delivered": cell(44, 0.88),
            "accepted": cell(None),
            "completed": cell(30, 0.6),
        },
        "outcomes": {
            "total": {},
            "rows": [
                {"group_kind": by, "group": g, "metrics": {m: cell(v) for m, v in ms.items()}}
                for g, ms in rows
            ],
        },
    }


def test_view_takes_every_number_from_the_report() -> None:
    by_month = report(
        "month",
        [
            ("2024-03", {"calls": 120, "outcome.no_enforcement": 50, "outcome.other": None}),
            ("2024-04", {"calls": 80, "outcome.no_enforcement": 30}),
        ],
    )
    by_area = report("area", [("NORTH", {"calls": 90, "outcome.voluntary_transport": 33})])
    pipe = pipeline_view(
        {"total": 0}, {"cad": 3}, {"ok": True, "breaks": 0, "checked_at": "2026-01-01T00:00:00Z"}
    )
    by_week = {
        "total": {},
        "rows": [
            {"group_kind": "week", "group": "2024-03-04", "metrics": {"outcome.no_enforcement": cell(12)}}
        ],
    }
    view = dashboard_view(by_month, by_area, by_week, pipe)
    assert [c["key"] for c in view["headline"]] == [
        "no_enforcement",
        "voluntary_transport",
        "enforcement",
        "repeat_three_plus_enrolled",
    ]
    assert view["headline"][0] | {} == view["headline"][0]
    assert (
        view["headline"][0]["share"],
        view["headline"][0]["numerator"],
        view["headline"][0]["denominator"],
    ) == (0.4, 80, 200)
    assert view["headline"][2]["share"] is None  # suppressed stays suppressed
    assert view["headline"][3]["denominator"] == 32  # people with 3+ contacts
    assert view["by_month"]["categories"] == ["2024-03", "2024-04"]
    assert view["by_month"]["series"]["no_enforcement"] == [50, 30]
    assert view["by_month"]["series"]["other"] == [None, None]
    assert set(view["by_month"]["series"]) == {m.removeprefix("outcome.") for m in OUTCOME_SERIES}
    assert view["by_area"]["series"]["voluntary_transport"] == [33]
    assert view["by_week"]["categories"] == ["2024-03-04"]
    assert view["by_week"]["series"]["no_enforcement"] == [12]
    assert [r["value"] for r in view["funnel"]] == [50, 44, None, 30]
    assert view["repeat"][2] == {"label": "3+ contacts", "value": 32, "share": 0.2133}
    assert view["pipeline"]["dead_letters_total"] == 3 and view["pipeline"]["verification"]["ok"] is True


def test_pipeline_view_before_any_verification() -> None:
    assert pipeline_view({"total": 7}, {}, None) == {
        "projection_lag": 7,
        "dead_letters": {},
        "dead_letters_total": 0,
        "verification": None,
    }


def test_demo_settings_isolated() -> None:
    base = Settings()
    s = demo_settings(base, "demo")
    assert (s.kafka.topic_prefix, s.postgres.schema_, s.core_schema) == ("demo", "demo", "demo_core")
    assert base.kafka.topic_prefix == "hub"
    env = demo_env(s)
    assert env["HUB_KAFKA__TOPIC_PREFIX"] == env["HUB_POSTGRES__SCHEMA"] == "demo"
    # the demo's projections apply the county's vocabulary (its local codes)
    assert json.loads(env["HUB_PROJECTIONS__VOCABULARIES"])[-1].endswith("county.yaml")


def test_env_points_settings_at_demo(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for k, v in demo_env(demo_settings(Settings(), "demo7")).items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.kafka.topic_prefix, s.postgres.schema_) == ("demo7", "demo7")
    assert s.projections.vocabularies == demo_settings(Settings(), "demo7").projections.vocabularies


def test_component_configs_are_valid_for_their_kinds() -> None:
    from connectors.registry import KINDS, parse_components

    cfgs = component_configs(
        "http://x/cad",
        "http://x/cases",
        fhir_base="http://ehr/fhir",
        token_url="http://ehr/auth/token",
        mllp_port=2575,
    )
    assert {c["kind"] for c in cfgs} <= set(KINDS)  # kebab-case, as an operator writes them now
    validated = parse_components(cfgs, "hub demo")  # every option known and valid
    assert [c.name for c in validated] == [c["name"] for c in cfgs]
    (cad,) = [c for c in validated if c.kind == "cad-soql-poller"]
    assert cad.used_profile().profile.agency == "COUNTY"


def test_report_table_shows_suppression() -> None:
    buf = StringIO()
    Console(file=buf, width=160).print(report_table(report(None, [])))
    text = buf.getvalue()
    assert "no enforcement action" in text and "40.0%" in text and "ABQ COAST 40%" in text
    assert "suppressed (1-10)" in text


def test_weekly_table_is_suppressed_and_conserves_counts() -> None:
    from datetime import UTC, datetime, timedelta

    from hub.entry.api.readmodels import weekly_table

    t0 = datetime(2024, 3, 4, 18, tzinfo=UTC)  # a Monday, 10:00 in Los Angeles
    rows = [
        {
            "received_at": t0 + timedelta(days=i % 14),
            "call_category": "behavioral_health",
            "outcome": outcome,
            "behavioral_health": True,
            "referral_made": False,
            "connected_to_services": False,
            "co_responder": True,
        }
        for i, outcome in enumerate(
            ["no_enforcement"] * 40 + ["voluntary_transport"] * 30 + ["arrest_or_citation"] * 3
        )
    ]
    table = weekly_table(rows, "America/Los_Angeles", 10)
    assert [r["group"] for r in table["rows"]] == ["2024-03-04", "2024-03-11"]
    assert table["total"]["calls"]["value"] == 73
    published = [c["value"] for r in table["rows"] for c in r["metrics"].values()]
    published += [c["value"] for c in table["total"].values()]
    assert not [v for v in published if v is not None and 1 <= v <= 10]
    weeks = table["rows"]
    assert sum(w["metrics"]["calls"]["value"] for w in weeks) == 73


def test_force_panel_keeps_withheld_cells_withheld_and_groups_every_breakdown() -> None:
    def force_cells(calls: int | None, used: int | None) -> dict:
        return {"calls": cell(calls), "force_recorded": cell(calls, 1.0), "no_force": cell(None),
                "force_used": cell(used, 0.25)}

    by_month = {"total": force_cells(40, 10),
                "by_outcome": [
                    {"group_kind": "outcome", "group": "no_enforcement", "metrics": force_cells(40, None)}
                ],
                "rows": [{"group_kind": "month", "group": "2024-03", "metrics": force_cells(40, 10)}]}
    by_area = {"rows": [{"group_kind": "precinct", "group": "EAST", "metrics": force_cells(None, None)}]}
    panel = force_panel(by_month, by_area)
    groups = {g["key"]: g["rows"] for g in panel["groups"]}
    assert list(groups) == ["total", "outcome", "period", "area"]
    assert groups["total"][0]["cells"]["force_used"] == {"value": 10, "share": 0.25, "withheld": False}
    withheld = groups["outcome"][0]["cells"]["force_used"]
    assert withheld["value"] is None and withheld["withheld"]  # never 0
    assert groups["area"][0]["label"] == "EAST" and groups["area"][0]["cells"]["calls"]["withheld"]
    # a column the section lacks (a release from before it) is "not released", not withheld
    missing = groups["total"][0]["cells"]["force.restraints"]
    assert missing == {"value": None, "share": None, "withheld": False}
    assert [c["key"] for c in panel["columns"]][:4] == ["calls", "force_recorded", "no_force", "force_used"]


def test_demographics_panel_lists_every_category_of_each_dimension() -> None:
    section = {
        "sources": ["intake", "ehr"],
        "total": {"calls": cell(40), "conflicting": cell(None)},
        "rows": [{"group_kind": "race", "group": "white", "metrics": {"calls": cell(30, 0.75)}},
                 {"group_kind": "race", "group": "asian", "metrics": {"calls": cell(None)}},
                 {"group_kind": "gender", "group": "female", "metrics": {"calls": cell(40, 1.0)}}],
    }
    panel = demographics_panel(section)
    dims = {d["key"]: d["rows"] for d in panel["dimensions"]}
    assert list(dims) == ["race", "ethnicity", "gender", "age_band"]
    assert dims["race"] == [{"label": "white", "value": 30, "share": 0.75, "withheld": False},
                            {"label": "asian", "value": None, "share": None, "withheld": True}]
    assert panel["conflicting"]["withheld"] and panel["sources"] == ["intake", "ehr"]
    # no section (a release from before demographics): nothing drawn as a number
    empty = demographics_panel({"sources": [], "total": {}, "rows": [], "reason": "not released"})
    assert empty["reason"] == "not released" and empty["calls"]["value"] is None
    assert not empty["calls"]["withheld"]
