"""Issue 13 item 3: no hang. ``hub project`` as a real process with its PostgreSQL
connections through a :class:`~hub.devtools.faults.tcpcut.CutProxy`: PostgreSQL "restarts"
(every connection reset, new ones refused) while facts arrive, so a batch fails; the
worker exits non-zero within a bound (it used to hang in faust's ``wait_empty``, deaf to
SIGTERM) and its restart applies everything. SIGTERM ends it within ``stop_grace_s``
however stuck it is."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
import pytest_asyncio

from hub.devtools.faults.tcpcut import CutProxy
from hub.kernel.runtime import Runtime
from tests.integration.hubcli import start_hub
from tests.integration.projections.projection_scenario import scenario
from tests.integration.projections.test_app_processes import applied, log_end
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration
STOP_BOUND = 45.0  # seconds: a failed batch ends the worker well within this
GRACE = 4.0


@pytest_asyncio.fixture(loop_scope="session")
async def pg_proxy(proj_rt: Runtime) -> AsyncIterator[CutProxy]:
    proxy = CutProxy(proj_rt.settings.postgres.host, proj_rt.settings.postgres.port)
    await proxy.start()
    yield proxy
    await proxy.stop()


def start_worker(
    rt: Runtime, schema: str, proxy: CutProxy, *extra: str, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        "HUB_POSTGRES__SCHEMA": schema,
        "HUB_POSTGRES__PORT": str(proxy.port),
        "HUB_PROJECTIONS__BATCH_SIZE": "4",
        "HUB_STOP_GRACE_S": str(GRACE),
        "HUB_METRICS_PORT": "0",  # probes are tested on a port of their own below
        **(env_extra or {}),
    }
    return start_hub(rt.settings, "project", *extra, **env)


async def exited_within(proc: subprocess.Popen, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return proc.poll()


async def test_a_postgres_restart_under_traffic_ends_the_worker_then_the_restart_catches_up(
    proj_rt: Runtime, pg_proxy: CutProxy
) -> None:
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_outage"
    await rt.log.append(scenario(6, tag="a1"))
    await log_end(rt, schema)  # migrates the schema (granted to the runtime role)
    worker = start_worker(rt, schema, pg_proxy)
    try:
        await wait_for(lambda: applied_at_least(rt, schema, 1), 90, "the worker applying")
        pg_proxy.down()  # PostgreSQL restarting, as the worker sees it
        for n in range(4):  # live traffic during the outage: batches buffered behind the failed one
            await rt.log.append(scenario(10, tag=f"a2{n}"))
        code = await exited_within(worker, STOP_BOUND)
        assert code is not None, "the projector hung after a failed batch"
        assert code != 0
    finally:
        if worker.poll() is None:
            worker.kill()
        pg_proxy.up()
    restarted = start_worker(rt, schema, pg_proxy, "--until-caught-up")
    _, err = await asyncio.to_thread(restarted.communicate, timeout=120)
    assert restarted.returncode == 0, err.decode()[-2000:]
    assert await applied(rt, schema) == await log_end(rt, schema)


async def test_sigterm_ends_the_worker_within_the_grace_even_during_an_outage(
    proj_rt: Runtime, pg_proxy: CutProxy
) -> None:
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_term"
    await rt.log.append(scenario(3, tag="b1"))
    await log_end(rt, schema)
    worker = start_worker(rt, schema, pg_proxy)
    try:
        await wait_for(lambda: applied_at_least(rt, schema, 1), 90, "the worker applying")
        pg_proxy.down()
        await rt.log.append(scenario(3, tag="b2"))
        worker.send_signal(signal.SIGTERM)
        code = await exited_within(worker, GRACE + 10)
        assert code is not None, "SIGTERM did not end the projector"
    finally:
        if worker.poll() is None:
            worker.kill()
        pg_proxy.up()


async def applied_at_least(rt: Runtime, schema: str, n: int) -> bool:
    return await applied(rt, schema) >= n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_worker_serves_metrics_and_probes_on_its_metrics_port(
    proj_rt: Runtime, pg_proxy: CutProxy
) -> None:
    """Issue 13 item 6 (finding 7): `metrics_port` was never served, so the alerts could not
    fire for the workers and a hung projector went unnoticed."""
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_probes"
    await rt.log.append(scenario(3, tag="c1"))
    await log_end(rt, schema)
    port = free_port()
    worker = start_worker(rt, schema, pg_proxy, env_extra={"HUB_METRICS_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"

    async def get(path: str) -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return await client.get(base + path)
        except httpx.TransportError:
            return None

    try:
        ready = await wait_for(lambda: _ok(get("/readyz")), 90, "/readyz to answer 200")
        assert ready.text == "ready\n"
        await wait_for(lambda: applied_at_least(rt, schema, 1), 90, "the worker applying")
        live = await get("/livez")
        assert live is not None and live.status_code == 200
        scraped = await get("/metrics")
        assert scraped is not None and "hub_projection_progress_timestamp_seconds" in scraped.text
        assert "hub_projection_events_total" in scraped.text
        worker.send_signal(signal.SIGTERM)
        assert await exited_within(worker, GRACE + 10) is not None
    finally:
        if worker.poll() is None:
            worker.kill()


async def _ok(response: Awaitable[httpx.Response | None]) -> httpx.Response | None:
    r = await response
    return r if r is not None and r.status_code == 200 else None
