"""Issue 13 item 4: bounded appends. The broker of a log goes down (SIGKILL; a broker of
its own on other ports and its own state dir, never the shared one): an append used to
block for the whole outage (the idempotent producer never expires batches) with its claim
transaction ``idle in transaction``. Now it fails within ``kafka.append_timeout_s`` with
a transient :class:`AppendError`, releases its claims, says so in
``hub_log_broker_available``, and the retry after the outage appends the event; ``hub
verify`` passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from hub.devtools.infra import kafka
from hub.entry.commands.health import check as health_check
from hub.kernel import metrics
from hub.kernel.errors import is_retriable
from hub.kernel.log import AckTimeout, AppendError
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from hub.kernel.topics import append_health, ensure_topics
from hub.kernel.verify import run_verify
from tests.conftest import session_settings
from tests.integration.hub.kernel.test_log_crash_window import copies_in_log, dispatched
from tests.integration.runtimes import fresh_namespace

pytestmark = pytest.mark.integration
TIMEOUT = 2.0
PORT, CONTROLLER_PORT = 19292, 19293


@pytest_asyncio.fixture(loop_scope="session")
async def own_broker(services: object, tmp_path: Path) -> AsyncIterator[tuple[Settings, Settings]]:
    """(settings of the broker: its own state dir; settings of the hub on it: the shared keys)."""
    hub = session_settings()
    hub = hub.model_copy(update={"kafka": hub.kafka.model_copy(update={
        "bootstrap": f"127.0.0.1:{PORT}", "controller_port": CONTROLLER_PORT, "heap": "256m",
        "partitions": 1, "append_timeout_s": TIMEOUT,
    })})
    broker = hub.model_copy(update={
        "state_dir": tmp_path / "broker",
        "kafka": hub.kafka.model_copy(update={"credentials_dir": tmp_path / "broker" / "keys"}),
    })
    try:
        await kafka.up(broker)
        # the private broker has its own development CA and SCRAM passwords (under its state
        # dir); the hub on it trusts that CA and logs in with that admin password
        hub = hub.model_copy(update={"kafka": hub.kafka.model_copy(update={
            "credentials_dir": broker.kafka.credentials_dir,
        })})
        yield broker, hub
    finally:
        await asyncio.to_thread(kafka.down, broker, 30)


async def test_an_append_with_the_broker_down_fails_in_time_and_the_retry_lands(
    own_broker: tuple[Settings, Settings],
) -> None:
    broker, settings = own_broker
    assert (await ensure_topics(settings)).ok
    rt: Runtime
    async with fresh_namespace(settings) as rt:
        assert (await rt.log.append([dispatched("ok", 1)])).appended
        assert (await append_health(settings)).available
        env = dispatched("outage", 2)
        assert kafka.kill(broker) is not None  # the broker is down
        # `hub health` (and /healthz) say the log takes no appends, within their bound
        started = time.monotonic()
        report = await health_check(settings, 2.0)
        assert time.monotonic() - started < 5
        assert report["status"] == "degraded" and report["database"] is True
        assert report["log_appends"]["available"] is False and report["log_appends"]["problems"]
        started = time.monotonic()
        with pytest.raises(AppendError) as caught:
            await asyncio.wait_for(rt.log.append([env]), 60)
        took = time.monotonic() - started
        assert took < TIMEOUT + 5, f"the append took {took:.1f}s"
        assert is_retriable(caught.value)
        assert [type(e) for _, e in caught.value.failed] == [AckTimeout]
        assert metrics.LOG_BROKER_AVAILABLE._value.get() == 0
        schema = settings.core_schema
        assert await rt.pool.fetchval(
            f"SELECT count(*) FROM {schema}.indexed_events WHERE event_id = $1", env.id
        ) == 0  # never indexed: the retry appends it again
        assert await rt.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE $1",
            f"%{schema}.event_index%",
        ) == 0

        await kafka.up(broker)  # the outage ends; the source retries
        result = await asyncio.wait_for(rt.log.append([env]), 60)
        assert [a.envelope.id for a in result.appended] + [d.id for d in result.duplicates] == [env.id]
        assert metrics.LOG_BROKER_AVAILABLE._value.get() == 1
        assert (await append_health(settings)).available
        copies = await copies_in_log(rt, {env.id})
        assert 1 <= copies[env.id] <= 2  # a late delivery of the timed-out record is an identical copy
        report = await run_verify(rt.settings, rt.pool, rt.kafka, store=False)
        assert report.ok, [b.describe() for b in report.breaks]


async def test_every_hub_connection_bounds_idle_transactions(log_rt: Runtime) -> None:
    timeout = await log_rt.pool.fetchval("SHOW idle_in_transaction_session_timeout")
    assert timeout == f"{int(log_rt.settings.postgres.idle_in_transaction_timeout_s / 60)}min"
