"""The dashboard's demographics and use-of-force panels (static/panels.js) in headless
Chromium, on the demo data: an analyst sees the latest release's cells one to one — a
withheld cell reads "withheld", never 0 — in tables a screen reader can read (caption,
column and row headers). The screenshot is kept as ``test-artifacts/dashboard-panels.png``."""

from __future__ import annotations

from typing import Any

import asyncpg

from hub.devtools.demo import DemoResult
from hub.entry.api.server import ThreadedServer
from hub.kernel.settings import Settings
from tests.e2e.browser import Browser
from tests.e2e.test_dashboard_browser import ARTIFACTS, hub_json


def released_extras(settings: Settings) -> dict[str, Any]:
    """The extras (demographics, use of force, ...) of the latest release."""
    releases = hub_json(settings, "reports", "history")
    assert releases, "the demo's month was not released"
    return hub_json(settings, "report", "--release", releases[-1]["release_id"])["extras"]


def shown(cell: dict[str, Any]) -> str:
    return "withheld" if cell["value"] is None else str(cell["value"])


async def test_panels_show_the_released_cells(
    chromium: str, api_server: ThreadedServer, demo_run: DemoResult, settings: Settings
) -> None:
    async with Browser(chromium) as browser:
        await browser.goto(api_server.url + "/dashboard/")
        state = await browser.wait_for(
            "document.body && document.body.dataset.ready !== '0' && document.body.dataset.ready", timeout=60
        )
        error = await browser.evaluate("document.getElementById('error').textContent")
        assert state == "1", f"dashboard failed: {error}; console: {browser.console}"
        cells = await browser.evaluate(
            """[...document.querySelectorAll('table.cells td[data-metric]')].map(td => [
                 td.closest('table').dataset.panel, td.dataset.group, td.dataset.metric,
                 td.dataset.value, td.textContent])"""
        )
        tables = await browser.evaluate(
            """[...document.querySelectorAll('table.cells')].map(t => [t.dataset.panel, t.dataset.grouping,
                 !!t.querySelector('caption') && t.querySelector('caption').textContent.length > 0,
                 t.querySelectorAll('thead th[scope=col]').length,
                 t.querySelectorAll('tbody th[scope=row]').length,
                 t.getBoundingClientRect().height])"""
        )
        await browser.evaluate("document.getElementById('panel-demographics').scrollIntoView()")
        shot = await browser.screenshot(ARTIFACTS / "dashboard-panels.png")
    assert shot.stat().st_size > 20_000

    # every table is visible, captioned, with column and row headers
    groupings = {(p, g) for p, g, *_ in tables}
    assert {("demographics", d) for d in ("race", "ethnicity", "gender", "age_band")} <= groupings
    assert {("use_of_force", g) for g in ("total", "outcome", "period", "area")} <= groupings
    for _, _, caption, cols, rows, height in tables:
        assert caption and cols >= 2 and rows >= 1 and height > 0

    extras = released_extras(settings)
    page = {(p, g, m): (v, text) for p, g, m, v, text in cells}
    # demographics: every category of every dimension, as released
    demo = extras["demographics"]
    assert demo["rows"], "the release carries no demographics"
    for r in demo["rows"]:
        value, text = page[("demographics", f"{r['group_kind']}:{r['group']}", "calls")]
        assert value == shown(r["metrics"]["calls"]), r
        if r["metrics"]["calls"]["value"] is None:
            assert text == "withheld"  # never 0
    # use of force: the total, by outcome and by area, as released
    force = extras["use_of_force"]
    groups = [("total:all", force["total"])]
    groups += [(f"outcome:{r['group']}", r["metrics"]) for r in force["by_outcome"]]
    groups += [(f"area:{r['group']}", r["metrics"]) for r in force["rows"]]
    for group, metrics in groups:
        for metric, cell in metrics.items():
            value, text = page[("use_of_force", group, metric)]
            assert value == shown(cell), (group, metric)
            if cell["value"] is None:
                assert text == "withheld"
    # the demo records use of force on its forms, and some cells are shown
    assert any(v not in ("withheld", "0") for (p, _, m), (v, _) in page.items() if p == "use_of_force"
               and m == "force_recorded")


async def test_ehr_answers_land_sealed_and_in_the_release(
    demo_run: DemoResult, pg_pool: asyncpg.Pool, settings: Settings
) -> None:
    """The simulated EHR's answers carry the person's record (FHIR Patient, PID): the
    projector keeps each report sealed in ``person_demographics`` (nothing in clear) and the
    month's release counts the calls by it, suppressed."""
    schema = settings.postgres.schema_
    rows = await pg_pool.fetch(f'SELECT * FROM "{schema}".person_demographics WHERE source = $1', "ehr")
    assert rows, "no EHR answer carried demographics"
    for r in rows:
        stored = " ".join(str(v) for v in r.values()).lower()
        assert not any(word in stored for word in ("white", "black", "asian", "hispanic", "female"))
    demo = released_extras(settings)["demographics"]
    race = {r["group"]: r["metrics"]["calls"] for r in demo["rows"] if r["group_kind"] == "race"}
    # calls are counted by the EHR's record: a reported category is shown with calls
    assert any((c["value"] or 0) > 0 for g, c in race.items() if g != "not_reported"), race
    assert sum(c["value"] or 0 for c in race.values()) <= demo["total"]["calls"]["value"]
