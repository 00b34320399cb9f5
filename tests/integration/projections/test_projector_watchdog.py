"""Issue 13 item 3, no hang: a projector that stops making progress (no batch applied, never
caught up) stops itself after ``probe_stale_s`` — :class:`ProjectorStalled`, ``hub project``
exits non-zero for its supervisor to restart — instead of sitting there silently, alive and
applying nothing (what the lead suspected of the seed-13 long fault run; /livez said so, but
nothing acted on it without a probe-watching supervisor)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hub.kernel.runtime import Runtime
from projections.projector import Projector, ProjectorStalled
from tests.integration.projections.projection_scenario import scenario
from tests.integration.projections.test_app_processes import applied, log_end
from tests.integration.projections.test_projector_outage import applied_at_least, exited_within, start_worker
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration
STALL_S = 3.0


async def test_a_batch_that_never_returns_stops_the_worker(proj_rt: Runtime) -> None:
    """The apply path awaiting something forever (nothing else bounds it): the worker raises
    ProjectorStalled within the stall bound plus its stop bound."""
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_stuck"
    await rt.log.append(scenario(3, tag="f1"))
    projector = Projector(rt, schema)
    projector.stall_s = STALL_S
    entered = asyncio.Event()

    async def never_returns(batch: Any, *_: Any, **__: Any) -> Any:  # apply_batch(batch, conn)
        entered.set()
        await asyncio.Event().wait()

    projector.store.apply_batch = never_returns  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(ProjectorStalled, match="no progress"):
        await asyncio.wait_for(projector.run(), 90)
    assert entered.is_set(), "the worker never took a batch"
    assert time.monotonic() - started < 75


async def test_hub_project_blocked_on_postgres_exits_non_zero_well_before_the_statement_timeout(
    proj_rt: Runtime,
) -> None:
    """A real ``hub project`` whose batches wait on a lock another session holds (a stuck
    operator session, another tool holding the projections lock): with ``probe_stale_s`` 3 s
    it exits non-zero long before the 60 s statement timeout would end the wait, and says
    why; once the lock is free, a restart applies everything."""
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_blocked"
    await rt.log.append(scenario(3, tag="f2"))
    await log_end(rt, schema)
    worker = start_worker(rt, schema, _Direct(rt), env_extra={"HUB_PROBE_STALE_S": str(STALL_S)})
    try:
        await wait_for(lambda: applied_at_least(rt, schema, 1), 90, "the worker applying")
        async with rt.pool.acquire() as holder:
            await holder.execute("SELECT pg_advisory_lock(hashtext('hub.projections'), hashtext($1))", schema)
            try:
                await rt.log.append(scenario(3, tag="f3"))  # the next batch waits on the lock
                started = time.monotonic()
                code = await exited_within(worker, 40)
                assert code is not None, "the projector sat blocked without exiting"
                assert code != 0
                assert time.monotonic() - started < 40
                _, err = worker.communicate(timeout=10)
                assert b"no progress" in err, err.decode()[-2000:]
            finally:
                await holder.execute(
                    "SELECT pg_advisory_unlock(hashtext('hub.projections'), hashtext($1))", schema
                )
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    restarted = start_worker(rt, schema, _Direct(rt), "--until-caught-up")
    _, err = await asyncio.to_thread(restarted.communicate, timeout=120)
    assert restarted.returncode == 0, err.decode()[-2000:]
    assert await applied(rt, schema) == await log_end(rt, schema)


class _Direct:
    """The database's own port, where :func:`start_worker` expects a proxy's."""

    def __init__(self, rt: Runtime) -> None:
        self.port = rt.settings.postgres.port
