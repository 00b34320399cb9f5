"""``hub demo`` is seeded and re-runnable: a second run over the same prefix appends no new
fact, delivers nothing twice and ends with the same report."""

from __future__ import annotations

from rich.console import Console

from hub.demo import DemoResult, run_pipeline
from hub.settings import Settings
from tests.e2e.conftest import E2E_OPTIONS


async def test_second_run_adds_nothing(settings: Settings, demo_run: DemoResult) -> None:
    first = demo_run
    assert first.ingest["county-cad"]["events_appended"] > 0
    assert first.verify_ok is True
    again = await run_pipeline(settings, E2E_OPTIONS, Console(quiet=True))
    assert again.ingest["county-cad"].get("events_appended", 0) == 0
    assert again.ingest["county-cases"].get("events_appended", 0) == 0
    assert again.ingest["coresponder-app"]["events_appended"] == 0
    assert again.ingest["coresponder-app"]["events_duplicate"] == first.ingest["coresponder-app"]["read"]
    assert again.referrals == first.referrals
    assert again.report == first.report
    assert again.verify_ok is True
