"""The real adapters keep the port contracts of ``tests/contracts/ports.py`` (the reference
for the in-memory fakes, ``tests/unit/connectors/core/test_memory_ports.py``):
``hub.kernel.log.EventLog`` on the session's Kafka topics, and the PostgreSQL stores of
``connectors/core/state.py`` in the session's core schema — all from the runtime that
``hub.bootstrap.open_runtime`` opens (fixture ``rt``, ``tests/integration/runtimes.py``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from connectors.core.records import RevisionKey
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


async def test_a_key_claimed_by_a_concurrent_writer_meanwhile_is_answered_with_its_revision(
    rt: Runtime,
) -> None:
    """The claim is one statement whose read predates a concurrent writer's commit: a key
    that writer claimed while the statement waited on it is still answered, with the
    writer's revision (never ours, never missing)."""
    store = PostgresRevisionStore(rt.pool, rt.settings.core_schema)
    source = f"cad/race-{uuid.uuid4().hex[:8]}"
    table = f"{rt.settings.core_schema}.connector_revisions"
    async with rt.pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        await other.execute(
            f"INSERT INTO {table} (source, record_key, first_revision) VALUES ($1, 'A', 'theirs')", source
        )
        ours = [RevisionKey("A", "ours"), RevisionKey("B", "ours")]
        claim = asyncio.ensure_future(store.claim(source, ours))
        await wait_until_blocked(rt, claim, other.get_server_pid())
        await tx.commit()
        assert await claim == {"A": "theirs", "B": "ours"}
    again = [RevisionKey("A", "x"), RevisionKey("B", "x")]
    assert await store.claim(source, again) == {"A": "theirs", "B": "ours"}


async def wait_until_blocked(rt: Runtime, task: asyncio.Future, holder: int) -> None:
    """Until a session waits on a lock ``holder`` holds (the claim's INSERT on its row)."""
    for _ in range(500):
        assert not task.done(), "the claim finished while the other writer held its key"
        waiting = await rt.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the claim never waited on the other writer's key")
