"""Shared test fixtures.

Every test session gets its own namespace on the shared services so that engineers and CI
runs never see each other's data:

- ``settings``: :class:`~hub.kernel.settings.Settings` from the environment (``HUB_*``, ``HUB_CONFIG``)
  with a unique ``kafka.topic_prefix`` (``t`` + 8 hex digits) and a PostgreSQL schema of the
  same name; ``state_dir`` (hence the key files and the database password) is the shared one.
- ``services``: proves Kafka and PostgreSQL answer. Under ``CI=true`` a missing service FAILS
  the requesting tests; locally ``hub infra up`` is tried once first.
- ``topics``: the topic catalogue created for the session prefix (a ``TopicReport``).
- ``pg_pool``: an asyncpg pool on the hub database.

At the end of the session the prefix's topics and the schemas named ``<prefix>`` or
``<prefix>_*`` are deleted (set ``HUB_TEST_KEEP=1`` to keep them for inspection).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio

from hub.devtools.infra import kafka, postgres
from hub.kernel.db import create_pool
from hub.kernel.logs import QUIET_LIBRARIES
from hub.kernel.namespace import Namespace
from hub.kernel.settings import PROJECT_ROOT, Settings
from hub.kernel.topics import TopicReport, ensure_topics
from tests import teardown_watchdog

# the shared contract tests (tests/contracts) live outside test modules: rewrite their asserts too
pytest.register_assert_rewrite("tests.contracts")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The last test's teardown tears the session down too: watched (tests.teardown_watchdog)."""
    if nextitem is None:
        teardown_watchdog.arm()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    teardown_watchdog.disarm()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def session_settings(prefix: str | None = None) -> Settings:
    """Settings for a test session: the environment's, in a unique namespace (topic prefix
    and read-model schema ``t<8 hex>``)."""
    namespace = Namespace(prefix, prefix) if prefix else Namespace.unique("t")
    return namespace.apply(Settings())


@pytest.fixture(autouse=True)
def _hermetic_unit_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no ``HUB_*`` variables: an operator's or CI's environment (another broker
    address, a DSN, ``HUB_CONFIG``) must not change what pure code is tested against."""
    if "/tests/unit/" in str(request.node.path).replace("\\", "/"):
        for name in [n for n in os.environ if n.upper().startswith("HUB_")]:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _unit_logging_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A unit test that runs a ``hub`` command in-process (``CliRunner``) leaves the process's
    logging as it found it: the root callback installs the hub's stderr handler on the
    runner's stream (closed afterwards) and sets the root and library levels, which would
    make a later test's log record fail to print ("--- Logging error ---" on stderr)."""
    if "/tests/unit/" not in str(request.node.path).replace("\\", "/"):
        yield
        return
    root = logging.getLogger()
    handlers = set(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LIBRARIES)}
    yield
    for handler in [h for h in root.handlers if h not in handlers and h.get_name() == "hub"]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The session's settings (unique topic prefix and PostgreSQL schema; shared keys)."""
    return session_settings()


@dataclass(frozen=True)
class Services:
    """Both services answered a probe at session start."""

    kafka_bootstrap: str
    kafka_cluster_id: str | None
    postgres_version: str | None


async def _probe(settings: Settings) -> tuple[kafka.KafkaStatus, postgres.PostgresStatus]:
    return await asyncio.gather(kafka.probe(settings), postgres.probe(settings))


_services_failure: list[str] = []


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Kafka and PostgreSQL are reachable, or the requesting tests fail with the reason.

    On teardown, everything the session created under its prefix is removed (topics
    ``<prefix>.*``, schemas ``<prefix>`` and ``<prefix>_*``) unless ``HUB_TEST_KEEP=1``."""
    if _services_failure:
        pytest.fail(_services_failure[0], pytrace=False)
    k, p = await _probe(settings)
    if not (k.healthy and p.healthy) and not in_ci():
        # Locally, bring the shared services up once (idempotent; a no-op when healthy).
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hub.devtools.commands.infra", "up"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        k, p = await _probe(settings)
        if not (k.healthy and p.healthy):
            _services_failure.append(
                "`hub infra up` could not bring the services up:\n" + (result.stdout + result.stderr)[-3000:]
            )
    if not (k.healthy and p.healthy):
        reasons = []
        if not k.healthy:
            reasons.append(f"Kafka at {settings.kafka.bootstrap}: {k.error}")
        if not p.healthy:
            reasons.append(f"PostgreSQL at {p.target}: {p.error}")
        hint = "CI=true: services must be started before the tests (make test does it)" if in_ci() else ""
        _services_failure.append("integration services unavailable — " + "; ".join(reasons) + f". {hint}")
        pytest.fail(_services_failure[-1], pytrace=False)
    yield Services(settings.kafka.bootstrap, k.cluster_id, p.server_version)
    if os.environ.get("HUB_TEST_KEEP") != "1":
        await Namespace.of(settings).teardown(settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def topics(settings: Settings, services: Services) -> TopicReport:
    """The topic catalogue for the session prefix, created on the shared broker."""
    report = await ensure_topics(settings)
    assert report.ok, f"topic catalogue for {settings.kafka.topic_prefix}: {report.to_dict()}"
    return report


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_pool(settings: Settings, services: Services) -> AsyncIterator[asyncpg.Pool]:
    """An OWNER-role pool on the hub database, for migrations and for tests that set up or
    tamper with state as an operator would (the session's schemas are dropped by ``services``)."""
    pool = await create_pool(settings, role="owner", max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def runtime_pool(settings: Settings, services: Services) -> AsyncIterator[asyncpg.Pool]:
    """A RUNTIME-role pool: what every hub process serves with (migrate with ``pg_pool`` first)."""
    pool = await create_pool(settings, role="runtime", max_size=5)
    try:
        yield pool
    finally:
        await pool.close()

