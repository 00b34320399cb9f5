"""The projector (the faust worker of ``projections.app``) as real processes
(`hub project`): SIGKILL mid-stream and a restart end with rows equal to a clean run; two
workers in one consumer group, with the group forced to rebalance twice (a worker joins, a
worker leaves), end with the same rows as well. On assignment a worker starts at the
positions stored in PostgreSQL, whether the group's Kafka offsets lag or lead them; a
batch that fails stops the worker, and the restart loses nothing."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import asyncpg
import pytest

from hub.kernel.db import open_pool
from hub.kernel.kafka_io import end_offsets, topic_partitions
from hub.kernel.log import family_topics
from hub.kernel.runtime import Runtime
from projections import tables as T
from projections.app import group_id
from projections.projector import project
from projections.store import snapshot
from tests.integration.hubcli import start_hub
from tests.integration.projections.projection_scenario import scenario
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration
TABLES = (*T.READ_MODELS, T.POSITIONS)
TIMEOUT = 90.0


def start_worker(rt: Runtime, schema: str, *extra: str) -> subprocess.Popen[bytes]:
    return start_hub(
        rt.settings, "project", *extra, HUB_POSTGRES__SCHEMA=schema, HUB_PROJECTIONS__BATCH_SIZE="4"
    )


async def applied(rt: Runtime, schema: str) -> int:
    exists = await rt.pool.fetchval("SELECT to_regclass($1)", f"{schema}.projection_positions")
    if exists is None:
        return 0
    return await rt.pool.fetchval(
        f'SELECT coalesce(sum(next_offset), 0) FROM "{schema}".projection_positions'
    )


async def clean_run(rt: Runtime, schema: str) -> dict[str, list[tuple]]:
    await project(rt, schema=schema, until_caught_up=True)
    return await snapshot(rt.pool, schema, TABLES)


async def as_owner(rt: Runtime, statement: str) -> None:
    """DDL as an operator would run it: the runtime role (``rt.pool``) may not."""
    async with open_pool(rt.settings, role="owner", max_size=1) as pool:
        await pool.execute(statement)


async def log_end(rt: Runtime, schema: str) -> int:
    """Records in the fact topics: the sum of their end offsets."""
    await rt.migrate_schema("read_models", schema)
    tps = await topic_partitions(rt.kafka, family_topics(rt.settings.kafka.topic_prefix))
    return sum((await end_offsets(rt.kafka, tps)).values())


async def _between(rt: Runtime, schema: str, lo: int, hi: int) -> bool:
    return lo <= await applied(rt, schema) <= hi


async def test_sigkill_mid_stream_then_restart_equals_a_clean_run(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    events = scenario(40, tag="c")
    await rt.log.append(events)
    schema = f"{prefix}_killed"
    end = await log_end(rt, schema)
    assert end >= len(events)
    worker = start_worker(rt, schema)
    try:
        await wait_for(lambda: _between(rt, schema, 1, end - 1), TIMEOUT, "the worker to be mid-stream", 0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        mid = await applied(rt, schema)
        assert 0 < mid < end, "the kill did not land mid-stream"
    finally:
        if worker.poll() is None:
            worker.kill()
    restarted = start_worker(rt, schema, "--until-caught-up")
    _, err = restarted.communicate(timeout=TIMEOUT)
    assert restarted.returncode == 0, err.decode()[-2000:]
    assert await applied(rt, schema) == end
    assert await snapshot(rt.pool, schema, TABLES) == await clean_run(rt, f"{prefix}_clean1")


async def test_two_workers_with_forced_rebalances_equal_a_clean_run(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    schema = f"{prefix}_pair"
    await rt.log.append(scenario(10, tag="d"))
    first = start_worker(rt, schema)
    second = None
    try:
        end = await log_end(rt, schema)
        await wait_for(
            lambda: _between(rt, schema, end, end), TIMEOUT, "the first worker to apply phase 1", 0.02
        )
        second = start_worker(rt, schema)  # joins the group: rebalance
        await rt.log.append(scenario(10, tag="e"))
        end = await log_end(rt, schema)
        await wait_for(lambda: _between(rt, schema, end, end), TIMEOUT, "the pair to apply phase 2", 0.02)
        first.send_signal(signal.SIGTERM)  # leaves the group: another rebalance
        assert first.wait(timeout=60) == 0, first.stderr.read().decode()[-2000:] if first.stderr else ""
        await rt.log.append(scenario(10, tag="f"))
        end = await log_end(rt, schema)
        await wait_for(
            lambda: _between(rt, schema, end, end), TIMEOUT, "the second worker to apply phase 3", 0.02
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second.stderr.read().decode()[-2000:] if second.stderr else ""
    finally:
        for w in (first, second):
            if w is not None and w.poll() is None:
                w.kill()
    assert await snapshot(rt.pool, schema, TABLES) == await clean_run(rt, f"{prefix}_clean2")


async def _rewind_group(rt: Runtime, schema: str) -> None:
    """Commit offset 0 for every fact partition in the schema's (idle) consumer group."""
    tps = await topic_partitions(rt.kafka, family_topics(rt.settings.kafka.topic_prefix))
    consumer = rt.kafka.consumer("test", group_id=group_id(rt.settings, schema))
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


async def test_assignment_starts_at_the_stored_positions_not_the_group_offsets(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    schema = f"{prefix}_seek"
    await rt.log.append(scenario(6, tag="71"))
    before = await log_end(rt, schema)
    first = await project(rt, schema=schema, until_caught_up=True)
    assert first.records == before and await applied(rt, schema) == before

    # the group's offsets behind the stored positions (as after a crash between the
    # PostgreSQL commit and the Kafka commit): nothing already applied is fetched again
    await _rewind_group(rt, schema)
    more = scenario(4, tag="72")
    await rt.log.append(more)
    end = await log_end(rt, schema)
    second = await project(rt, schema=schema, until_caught_up=True)
    assert (second.records, second.skipped, second.new_facts) == (end - before, 0, len(more))

    # a rebuilt schema: the group's offsets are ahead of the (empty) stored positions;
    # the worker starts from the beginning instead of waiting at the group's offsets
    await as_owner(rt, f'DROP SCHEMA "{schema}" CASCADE')
    third = await asyncio.wait_for(project(rt, schema=schema, until_caught_up=True), TIMEOUT)
    assert third.records == end and await applied(rt, schema) == end
    assert await snapshot(rt.pool, schema, TABLES) == await clean_run(rt, f"{prefix}_clean3")


async def test_a_failed_batch_stops_the_worker_and_the_restart_loses_nothing(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    schema = f"{prefix}_fail"
    await rt.log.append(scenario(4, tag="81"))
    await project(rt, schema=schema, until_caught_up=True)
    await as_owner(rt, f'ALTER TABLE "{schema}".timeline_entries RENAME TO timeline_gone')
    await rt.log.append(scenario(4, tag="82"))
    with pytest.raises(asyncpg.UndefinedTableError):  # faust acked that batch; PostgreSQL did not take it
        await asyncio.wait_for(project(rt, schema=schema, until_caught_up=True), TIMEOUT)
    await as_owner(rt, f'ALTER TABLE "{schema}".timeline_gone RENAME TO timeline_entries')
    await asyncio.wait_for(project(rt, schema=schema, until_caught_up=True), TIMEOUT)
    assert await applied(rt, schema) == await log_end(rt, schema)
    assert await snapshot(rt.pool, schema, TABLES) == await clean_run(rt, f"{prefix}_clean4")
