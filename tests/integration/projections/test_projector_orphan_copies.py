"""Orphan copies (an appender crashed after Kafka acknowledged and before the index commit,
and the retry wrote the facts again) do not double count: the projector keeps one fact per
event id, so the read models equal those of a clean log holding each fact once."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from hub.bootstrap import open_runtime
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from projections import tables as T
from projections.projector import project
from projections.queries import ReadModelReader
from projections.replay import replay_into
from projections.store import snapshot
from tests.conftest import session_settings
from tests.integration.hub.kernel.crash import produce_as_crashed_appender
from tests.integration.projections.projection_scenario import scenario

pytestmark = pytest.mark.integration
RECORDED_AT = T.FACTS.columns.index("recorded_at")


def without_recorded_at(rows: list[tuple]) -> list[tuple]:
    """Facts rows without ``recorded_at``: the projector keeps the first copy of an event,
    whose ``recordedat`` is the crashed attempt's (earlier than the retry's)."""
    return [r[:RECORDED_AT] + r[RECORDED_AT + 1 :] for r in rows]


async def test_orphan_copies_do_not_double_count(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    envs = scenario(24, tag="c")  # more than 10 calls: the headline is not suppressed
    crashed = envs[::3]  # a third of the facts, of every kind (the scenario is shuffled)
    earlier = [e.model_copy(update={"recordedat": e.recordedat - timedelta(minutes=5)}) for e in crashed]
    await produce_as_crashed_appender(rt.settings, earlier)
    result = await rt.log.append(envs)  # the retry: every id is still free in the index
    assert len(result.appended) == len(envs) and result.duplicates == []

    live = f"{prefix}_orphans"
    stats = await project(rt, schema=live, until_caught_up=True)
    assert stats.new_facts == len(envs) and stats.duplicates == len(crashed) and stats.dead_lettered == 0
    with_orphans = await snapshot(rt.pool, live, T.READ_MODELS)
    assert len(with_orphans["facts"]) == len(envs)
    calls = [e for e in envs if e.type.startswith("cad.call.received") and e.data["behavioral_health"]]
    head = (await ReadModelReader.from_settings(rt.pool, rt.settings, schema=live).report())["headline"]
    assert head["calls"]["value"] == len(calls)

    # a replay of the same log keeps the same first copies: it equals the live read models
    replayed = f"{prefix}_orphans_replay"
    await replay_into(rt.settings, rt.pool, rt.kafka, replayed)
    assert await snapshot(rt.pool, replayed, T.READ_MODELS) == with_orphans

    # the same facts in a clean log (no crash): identical read models, but for recorded_at
    clean_settings = session_settings()
    try:
        async with open_runtime(clean_settings) as clean:
            assert len((await clean.log.append(envs)).appended) == len(envs)
            clean_schema = f"{clean_settings.kafka.topic_prefix}_clean"
            clean_stats = await project(clean, schema=clean_schema, until_caught_up=True)
            assert clean_stats.new_facts == len(envs) and clean_stats.duplicates == 0
            baseline = await snapshot(clean.pool, clean_schema, T.READ_MODELS)
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(clean_settings).teardown(clean_settings)
    assert without_recorded_at(with_orphans["facts"]) == without_recorded_at(baseline["facts"])
    for table in T.READ_MODELS[1:]:
        assert with_orphans[table.name] == baseline[table.name], table.name
