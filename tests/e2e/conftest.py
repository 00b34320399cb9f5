"""End-to-end fixtures: the hub's demo pipeline (simulated county → connectors → log →
delivery → projections → seal/verify) run on the REAL Kafka and PostgreSQL in a namespace of
its own (topic prefix and schemas), and the API served on a free port.

The namespace is not the session's: in one run of the whole suite the integration tests
append facts and publish releases under the session's prefix (the API tests' incidents, the
area scenario's release), and the demo county's report, latest release, map and timelines
must be its own alone. ``settings``, ``topics`` and ``pg_pool`` are therefore redefined here
for ``tests/e2e``."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import date

import asyncpg
import pytest
import pytest_asyncio
from rich.console import Console

from hub.devtools.demo import DemoOptions, DemoResult, run_pipeline
from hub.devtools.simulate.feeds import INTAKE_DESTINATIONS
from hub.entry.api.server import ThreadedServer
from hub.kernel.db import create_pool
from hub.kernel.namespace import Namespace
from hub.kernel.settings import PROJECT_ROOT, CustomSettings, IntakeSettings, Settings
from hub.kernel.topics import TopicReport, ensure_topics
from tests.conftest import session_settings

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


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The end-to-end county's settings: a unique namespace, not the session's (shared keys)."""
    return session_settings()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def topics(settings: Settings, services: object) -> AsyncIterator[TopicReport]:
    """The topic catalogue under the county's prefix; on teardown its topics and schemas are
    removed (unless ``HUB_TEST_KEEP=1``)."""
    report = await ensure_topics(settings)
    assert report.ok, f"topic catalogue for {settings.kafka.topic_prefix}: {report.to_dict()}"
    try:
        yield report
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_pool(settings: Settings, topics: TopicReport) -> AsyncIterator[asyncpg.Pool]:
    """An OWNER-role pool for the county's namespace (closed before it is torn down)."""
    pool = await create_pool(settings, role="owner", max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


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
