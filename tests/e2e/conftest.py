"""End-to-end fixtures: the hub's demo pipeline (simulated county → connectors → log →
delivery → projections → seal/verify) run on the REAL Kafka and PostgreSQL under the test
session's own topic prefix and schema, and the API served on a free port."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import date

import asyncpg
import pytest
import pytest_asyncio
from rich.console import Console

from hub.devtools.demo import DemoOptions, DemoResult, run_pipeline
from hub.devtools.simulate.feeds import INTAKE_DESTINATIONS
from hub.entry.api.server import ThreadedServer
from hub.kernel.settings import PROJECT_ROOT, CustomSettings, IntakeSettings, Settings

# a small county: every chart has data, the suite stays fast
E2E_OPTIONS = DemoOptions(
    seed=11,
    days=14,
    start=date(2024, 3, 4),
    calls_per_day=300,
    prefix="unused",
    serve_api=False,
    settle_seconds=2.0,
    timeout_seconds=240,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True)
def _e2e_marker(request: pytest.FixtureRequest) -> None:
    request.node.add_marker(pytest.mark.e2e)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def demo_run(settings: Settings, topics: object, pg_pool: asyncpg.Pool) -> DemoResult:
    """The demo pipeline, once per session, quietly."""
    return await run_pipeline(settings, E2E_OPTIONS, Console(quiet=True))


#: the simulated county's own fields (no metrics: releases stay the built-in ones)
COUNTY_FIELDS = PROJECT_ROOT / "tests" / "data" / "custom" / "county-fields.yaml"


def with_intake(settings: Settings) -> Settings:
    """The session's settings with the simulated county's intake configured (as the demo's
    API), and its custom fields declared."""
    intake = IntakeSettings(destinations=dict(INTAKE_DESTINATIONS), person_systems=["mpi:county"])
    custom = CustomSettings(definitions=str(COUNTY_FIELDS))
    return settings.model_copy(update={"intake": intake, "custom": custom})


@pytest.fixture(scope="session")
def api_server(settings: Settings, demo_run: DemoResult) -> Iterator[ThreadedServer]:
    server = ThreadedServer(with_intake(settings)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; missing fails under CI (``apt-get install -y chromium``)."""
    from tests.e2e.browser import chromium_binary

    found = chromium_binary()
    if found is None:
        if in_ci():
            pytest.fail("chromium is not installed (apt-get install -y chromium)", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    assert shutil.which(found)
    return found
