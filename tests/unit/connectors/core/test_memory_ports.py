"""The in-memory fakes (``connectors/core/memory.py``) keep the port contracts of
``tests/contracts/ports.py`` — the same tests the real adapters pass
(``tests/integration/connectors/core/test_real_ports.py``)."""

from __future__ import annotations

import pytest

from connectors.core.memory import MemoryCursorStore, MemoryDeliveryStore, MemoryLog, MemoryRevisionStore
from tests.contracts.ports import (
    CursorStoreContract,
    DeliveryStoreContract,
    LogPortContract,
    RevisionStoreContract,
)


class TestMemoryLog(LogPortContract):
    @pytest.fixture
    def log(self) -> MemoryLog:
        return MemoryLog()


class TestMemoryCursorStore(CursorStoreContract):
    @pytest.fixture
    def cursors(self) -> MemoryCursorStore:
        return MemoryCursorStore()


class TestMemoryRevisionStore(RevisionStoreContract):
    @pytest.fixture
    def revisions(self) -> MemoryRevisionStore:
        return MemoryRevisionStore()


class TestMemoryDeliveryStore(DeliveryStoreContract):
    @pytest.fixture
    def deliveries(self) -> MemoryDeliveryStore:
        return MemoryDeliveryStore()
