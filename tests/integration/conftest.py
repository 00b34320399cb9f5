"""Integration tests run against the REAL shared Kafka broker and PostgreSQL.

Every test under ``tests/integration`` depends on the ``services`` fixture (see
``tests/conftest.py``): under ``CI=true`` an unreachable service fails the tests; locally
``hub infra up`` is tried once. Tests still declare ``pytestmark = pytest.mark.integration``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from hub.kernel.audit import AuditTopic
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import Settings
from tests.integration.runtimes import fresh_runtime, log_rt, proj_rt, rt  # noqa: F401


@pytest.fixture(autouse=True)
def _require_services(services: object) -> None:
    """Make every integration test wait for (or fail on) the shared services."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def audit_topic(settings: Settings, topics: object) -> AsyncIterator[AuditTopic]:
    """The session's audit topic (its producer stopped at the end)."""
    trail = AuditTopic(KafkaClients(settings.kafka), settings.kafka.topic_prefix)
    yield trail
    await trail.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
