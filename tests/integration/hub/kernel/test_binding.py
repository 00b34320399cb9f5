"""A core schema's state is bound to one Kafka cluster (hub.kernel.binding) on the real broker and
PostgreSQL: bound at first use, refused against another cluster with a clear message,
moved deliberately by ``rebind``, and reset automatically by the demo (not for ``hub``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from hub.bootstrap import open_runtime
from hub.devtools.demo import reset_if_foreign
from hub.kernel.binding import ClusterMismatchError, rebind, recorded_cluster
from hub.kernel.db import open_pool
from hub.kernel.namespace import Namespace
from hub.kernel.settings import Settings
from schemas.dispatch import UnitDispatched
from schemas.envelope import new_event
from tests.conftest import Services, session_settings

OTHER = "OtherClusterId000000AA"


@asynccontextmanager
async def prefix() -> AsyncIterator[Settings]:
    """Settings on a brand-new prefix; its topics and schemas are removed afterwards."""
    settings = session_settings()
    try:
        yield settings
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)


async def seed_one_fact(settings: Settings) -> None:
    async with open_runtime(settings) as rt:
        event = new_event(
            UnitDispatched(incident_id="sea:bind-1", unit_id="u1", at=datetime(2024, 6, 1, tzinfo=UTC)),
            source="cad/test",
            record_id="bind-1",
            revision=0,
        )
        assert len((await rt.log.append([event])).appended) == 1


async def set_recorded(settings: Settings, cluster: str | None) -> None:
    async with open_pool(settings, role="owner", max_size=1) as pool:
        if cluster is None:
            await pool.execute(f"DELETE FROM {settings.core_schema}.kafka_binding")
        else:
            await pool.execute(f"UPDATE {settings.core_schema}.kafka_binding SET cluster_id = $1", cluster)


async def test_first_open_binds_and_another_cluster_id_is_refused_clearly(services: Services) -> None:
    async with prefix() as settings:
        await seed_one_fact(settings)
        async with open_pool(settings, role="owner", max_size=1) as pool:
            assert await recorded_cluster(pool, settings.core_schema) == services.kafka_cluster_id
        await set_recorded(settings, OTHER)  # as if restored from another cluster's backup
        with pytest.raises(ClusterMismatchError) as caught:
            async with open_runtime(settings):
                pytest.fail("Runtime.open must refuse state bound to another cluster")
        text = str(caught.value)
        assert OTHER in text and str(services.kafka_cluster_id) in text
        assert (
            settings.core_schema in text and "hub infra rebind --yes" in text and "hub demo --reset" in text
        )
        # the deliberate move: rebind, then the runtime opens and the index still holds the fact
        async with open_pool(settings, role="owner", max_size=1) as pool:
            assert await rebind(pool, settings) == (OTHER, services.kafka_cluster_id)
            row = await pool.fetchrow(
                f"SELECT cluster_id, previous_cluster_id FROM {settings.core_schema}.kafka_binding"
            )
        assert (row["cluster_id"], row["previous_cluster_id"]) == (services.kafka_cluster_id, OTHER)
        async with open_runtime(settings) as rt:
            assert await rt.pool.fetchval(f"SELECT count(*) FROM {settings.core_schema}.event_index") == 1


async def test_unbound_state_is_adopted_only_when_it_fits_the_log(services: Services) -> None:
    async with prefix() as settings:
        await seed_one_fact(settings)
        await set_recorded(settings, None)  # state written before bindings existed, fits the log
        async with open_runtime(settings) as rt:
            assert await recorded_cluster(rt.pool, settings.core_schema) == services.kafka_cluster_id
        await set_recorded(settings, None)
        async with open_pool(settings, role="owner", max_size=1) as pool:  # an index from a longer, other log
            await pool.execute(f'UPDATE {settings.core_schema}.event_index SET "offset" = "offset" + 1000')
        with pytest.raises(ClusterMismatchError, match="state written before bindings existed") as caught:
            async with open_runtime(settings):
                pytest.fail("Runtime.open must refuse an index of offsets the log never had")
        assert "indexed up to offset" in str(caught.value)
        async with open_pool(settings, role="owner", max_size=1) as pool:
            assert await recorded_cluster(pool, settings.core_schema) is None  # nothing was bound


async def test_demo_resets_a_prefix_bound_to_another_cluster(services: Services) -> None:
    async with prefix() as settings:
        await seed_one_fact(settings)
        assert await reset_if_foreign(settings) is None  # bound here: nothing to do
        await set_recorded(settings, OTHER)
        note = await reset_if_foreign(settings)
        assert note is not None and "\n" not in note
        assert OTHER in note and str(services.kafka_cluster_id) in note and settings.core_schema in note
        async with open_runtime(settings) as rt:  # an empty log, bound to this cluster
            assert await rt.pool.fetchval(f"SELECT count(*) FROM {settings.core_schema}.event_index") == 0
            assert await recorded_cluster(rt.pool, settings.core_schema) == services.kafka_cluster_id
            assert [e async for e in rt.log.replay()] == []


async def test_the_demo_never_resets_the_hub_prefix(services: Services) -> None:
    """Decided before any I/O: with unreachable services the answer is still "no reset"."""
    base = session_settings()
    hub = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": "hub", "bootstrap": "127.0.0.1:1"}),
            "postgres": base.postgres.model_copy(
                update={"schema_": "hub", "dsn": "postgresql://nobody:x@127.0.0.1:1/none"}
            ),
        }
    )
    assert await reset_if_foreign(hub) is None
