"""The real adapters keep the port contracts of ``tests/contracts/ports.py`` (the reference
for the in-memory fakes, ``tests/unit/connectors/core/test_memory_ports.py``):
``hub.kernel.log.EventLog`` on the session's Kafka topics, and the PostgreSQL stores of
``connectors/core/state.py`` in the session's core schema — all from the runtime that
``hub.bootstrap.open_runtime`` opens (fixture ``rt``, ``tests/integration/runtimes.py``)."""

from __future__ import annotations

import pytest

from connectors.core.state import PostgresCursorStore, PostgresDeliveryStore, PostgresRevisionStore
from hub.kernel.log import EventLog
from hub.kernel.runtime import Runtime
from tests.contracts.ports import (
    CursorStoreContract,
    DeliveryStoreContract,
    LogPortContract,
    RevisionStoreContract,
)

pytestmark = pytest.mark.integration


class TestEventLog(LogPortContract):
    @pytest.fixture
    def log(self, rt: Runtime) -> EventLog:
        return rt.log


class TestPostgresCursorStore(CursorStoreContract):
    @pytest.fixture
    def cursors(self, rt: Runtime) -> PostgresCursorStore:
        return PostgresCursorStore(rt.pool, rt.settings.core_schema)


class TestPostgresRevisionStore(RevisionStoreContract):
    @pytest.fixture
    def revisions(self, rt: Runtime) -> PostgresRevisionStore:
        return PostgresRevisionStore(rt.pool, rt.settings.core_schema)


class TestPostgresDeliveryStore(DeliveryStoreContract):
    @pytest.fixture
    def deliveries(self, rt: Runtime) -> PostgresDeliveryStore:
        return PostgresDeliveryStore(rt.pool, rt.settings.core_schema)
