"""The dashboard in headless Chromium: the page fetches its analyst token and the
de-identified aggregates, draws every chart with data, and its numbers are the report's.
The screenshot is kept as ``test-artifacts/dashboard.png``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from hub.devtools.demo import DemoResult, demo_env
from hub.entry.api.server import ThreadedServer
from hub.kernel.settings import PROJECT_ROOT, Settings
from tests.e2e.browser import Browser

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHARTS = ("chart-time", "chart-area", "chart-funnel", "chart-repeat")


def hub_json(settings: Settings, *args: str) -> Any:
    """``hub <args> --json`` as a user runs it, pointed at the session's data."""
    out = subprocess.run(
        [sys.executable, "-m", "hub.entry.cli", *args, "--json"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **demo_env(settings)},
        timeout=120,
    )
    return json.loads(out.stdout)


def latest_release(settings: Settings) -> list[dict[str, Any]]:
    """The records of the latest release (what the analyst's dashboard draws)."""
    releases = hub_json(settings, "reports", "history")
    assert releases, "the demo's month was not released"
    return hub_json(settings, "report", "--release", releases[-1]["release_id"])["records"]


async def test_dashboard_renders_report_numbers(
    chromium: str, api_server: ThreadedServer, demo_run: DemoResult, settings: Settings
) -> None:
    async with Browser(chromium) as browser:
        await browser.goto(api_server.url + "/dashboard/")
        state = await browser.wait_for(
            "document.body && document.body.dataset.ready !== '0' && document.body.dataset.ready", timeout=60
        )
        error = await browser.evaluate("document.getElementById('error').textContent")
        assert state == "1", f"dashboard failed: {error}; console: {browser.console}"
        # every chart drew marks with non-zero values and a visible size
        drawn = await browser.evaluate(
            f"Object.fromEntries({json.dumps(list(CHARTS))}.map(id => [id, "
            "[...document.querySelectorAll('#' + id + ' rect[data-value]')]"
            ".filter(r => Number(r.dataset.value) > 0 && r.getBoundingClientRect().width > 0"
            " && r.getBoundingClientRect().height > 0).length]))"
        )
        assert all(drawn[c] > 0 for c in CHARTS), drawn
        cards = await browser.evaluate(
            "[...document.querySelectorAll('#headline .card')].map(c => [c.dataset.metric, c.dataset.value])"
        )
        shot = await browser.screenshot(ARTIFACTS / "dashboard.png")
    assert shot.stat().st_size > 20_000  # a page of charts, not a blank page

    report = hub_json(demo_run.settings, "report")  # pointed at the demo as `hub demo` prints it
    assert report == demo_run.report  # the demo's report is the CLI's
    assert [m for m, _ in cards] == [
        "no_enforcement",
        "voluntary_transport",
        "enforcement",
        "repeat_three_plus_enrolled",
    ]
    # an analyst's dashboard shows the released month: its cards are the release's cells
    total = {r["metric"]: r for r in latest_release(settings) if r["area_kind"] == "all"}
    released = {
        "no_enforcement": total["outcome.no_enforcement"]["share"],
        "voluntary_transport": total["outcome.voluntary_transport"]["share"],
        "enforcement": total["outcome.arrest_or_citation"]["share"],
    }
    for metric, value in cards:
        if metric in released:
            assert (None if value == "suppressed" else float(value)) == released[metric], metric
    # populated, not all suppressed (a correction since the month's first release — the intake
    # test's form — withholds the cells it moved by one)
    assert sum(v is not None for v in released.values()) >= 1


async def test_dashboard_series_match_report_by_month_and_area(
    chromium: str, api_server: ThreadedServer, settings: Settings
) -> None:
    """The stacked bars carry the released cells (by area) one to one."""
    async with Browser(chromium) as browser:
        await browser.goto(api_server.url + "/dashboard/")
        await browser.wait_for("document.body && document.body.dataset.ready === '1'", timeout=60)
        marks = await browser.evaluate(
            """[...document.querySelectorAll('#chart-area rect[data-series]')]
                 .map(r => [r.dataset.label, r.dataset.series, r.dataset.value])"""
        )
    expected = {
        (r["area"], r["metric"].removeprefix("outcome."), "suppressed" if r["value"] is None
         else str(r["value"]))
        for r in latest_release(settings)
        if r["area_kind"] != "all" and r["metric"].startswith("outcome.")
    }
    assert marks and {tuple(m) for m in marks} <= expected


@pytest.mark.parametrize(
    "path", ["/dashboard/", "/dashboard/static/charts.js", "/dashboard/static/dashboard.js"]
)
def test_dashboard_assets_have_no_external_references(api_server: ThreadedServer, path: str) -> None:
    import httpx

    body = httpx.get(api_server.url + path, timeout=10).text
    assert "http://" not in body.replace("http://www.w3.org/2000/svg", "") and "https://" not in body


@pytest.mark.parametrize(
    "path", ["/dashboard/static/__init__.py", "/dashboard/static/../app.py", "/dashboard/static/x"]
)
def test_only_dashboard_assets_are_served(api_server: ThreadedServer, path: str) -> None:
    import httpx

    assert httpx.get(api_server.url + path, timeout=10).status_code == 404
