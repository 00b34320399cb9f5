"""The dashboard's map of areas of need in headless Chromium, as an analyst sees it: the
county's beats drawn from its GeoJSON (no tile server), the released month's withheld beats
hatched, every area reachable by keyboard with a text tooltip, the same numbers in a table for
screen readers — and the demo county's district map. Screenshots are kept under
``<state dir>/screenshots/`` (``var/screenshots/``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from hub.bootstrap import migrate_all
from hub.devtools.demo import DemoResult
from hub.entry.api.server import ThreadedServer
from hub.kernel.settings import Settings
from tests.e2e.browser import Browser
from tests.e2e.conftest import with_intake
from tests.integration.hub.entry.api.routes.areas_scenario import BEATS, release_may, seattle_settings

AREAS = "[...document.querySelectorAll('#map-beat path[data-area]')]"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seattle(settings: Settings, pg_pool: asyncpg.Pool, topics: object,
                  tmp_path_factory: pytest.TempPathFactory) -> Settings:
    await migrate_all(pg_pool, settings)  # the release log lives in the core schema
    s = await seattle_settings(settings, pg_pool, tmp_path_factory.mktemp("areas"))
    await release_may(s, pg_pool)
    return s


@pytest.fixture(scope="module")
def seattle_server(seattle: Settings) -> Iterator[ThreadedServer]:
    server = ThreadedServer(seattle).start()
    try:
        yield server
    finally:
        server.stop()


async def ready(browser: Browser) -> None:
    state = await browser.wait_for(
        "document.body && document.body.dataset.ready !== '0' && document.body.dataset.ready", timeout=60)
    error = await browser.evaluate("document.getElementById('error').textContent")
    assert state == "1", f"dashboard failed: {error}; console: {browser.console}"


def shots(settings: Settings) -> Path:
    return settings.state_dir / "screenshots"


async def test_the_beats_map_hatches_withheld_beats(chromium: str, seattle_server: ThreadedServer,
                                                    seattle: Settings) -> None:
    async with Browser(chromium) as browser:
        await browser.goto(seattle_server.url + "/dashboard/")
        await ready(browser)
        areas = await browser.evaluate(
            f"{AREAS}.map(p => [p.dataset.area, p.dataset.value, p.dataset.suppressed,"
            " p.getAttribute('fill'),"
            " p.getBoundingClientRect().width > 10 && p.getBoundingClientRect().height > 10])")
        by_area = {a: (v, s, fill, visible) for a, v, s, fill, visible in areas}
        assert set(by_area) == set(BEATS) and all(v[3] for v in by_area.values()), by_area
        # the released month: K3's 4 calls withheld (hatched) with a complement; the first
        # measure is BH calls per 1,000 residents (K1: 30 per 5,234; M1: 40 per 4,000)
        assert by_area["K3"][1] == "1" and by_area["K3"][2].startswith("url(#map-hatch-")
        assert sum(v[1] == "1" for v in by_area.values()) >= 2
        assert by_area["K1"][:2] == ("5.7", "0") and by_area["M1"][:2] == ("10", "0")
        assert not by_area["K1"][2].startswith("url(")  # a shown area is coloured, not hatched
        legend = await browser.evaluate("[...document.querySelectorAll('#map-beat .map-legend-item')]"
                                        ".map(i => i.textContent)")
        assert any("suppressed" in t for t in legend), legend
        # keyboard: Tab reaches an area, whose tooltip tells its numbers in words
        await browser.tab_to("area-beat-K1")
        tip = await browser.evaluate("document.querySelector('#map-beat .map-tip').textContent")
        assert tip.startswith("beat K1: 30 behavioral-health calls") and "5.7 per 1,000 residents" in tip
        await browser.tab_to("area-beat-K3")
        tip = await browser.evaluate("document.querySelector('#map-beat .map-tip').textContent")
        assert "suppressed" in tip and "4" not in tip.replace("1 to 10", "")
        # the table equivalent: one row per beat, withheld ones say so
        table = await browser.evaluate(
            "[...document.querySelectorAll('#map-beat table tbody tr')]"
            ".map(r => [...r.children].map(c => c.textContent))")
        rows = {r[0]: r[1:] for r in table}
        assert rows["K1"] == ["30", "300", "5.7"] and rows["K3"][0] == "suppressed"
        # colour by calls per 1,000 calls for service instead
        await browser.evaluate(
            "(() => { const s = document.querySelector('#map-beat select'); s.value = 'rate_per_1000_calls';"
            " s.dispatchEvent(new Event('change')); })()")
        k1 = await browser.evaluate(f"{AREAS}.find(p => p.dataset.area === 'K1').dataset.value")
        assert k1 == "300"
        await browser.tab_to("area-beat-K1")  # the tooltip shows on the screenshot
        shot = await browser.screenshot(shots(seattle) / "dashboard-map-beats.png")
    assert shot.stat().st_size > 20_000


@pytest.fixture(scope="module")
def demo_server(demo_run: DemoResult) -> Iterator[ThreadedServer]:
    server = ThreadedServer(with_intake(demo_run.settings)).start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_demo_countys_district_map(chromium: str, demo_server: ThreadedServer,
                                             demo_run: DemoResult) -> None:
    async with Browser(chromium) as browser:
        await browser.goto(demo_server.url + "/dashboard/")
        await ready(browser)
        areas = await browser.evaluate(
            "[...document.querySelectorAll('#map-district path[data-area]')]"
            ".map(p => [p.dataset.area, p.dataset.value])")
        note = await browser.evaluate("document.querySelector('#map-district .map-note').textContent")
        shot = await browser.screenshot(shots(demo_run.settings) / "dashboard-map-demo.png")
    assert sorted(a for a, _ in areas) == ["EAST", "NORTH", "SOUTH", "WEST"]
    assert "simulated county" in note
    assert shot.stat().st_size > 20_000
    records = json.dumps(areas)
    assert "none" not in records  # every district had released calls
