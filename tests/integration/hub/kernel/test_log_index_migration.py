"""Core migration 0004 on the real PostgreSQL: an existing database's text-keyed event index
(one row per event claimed before the produce, its offset UPDATEd after it) moves into the
compact layout with the keys :func:`hub.kernel.log.event_key` computes, and the log then
treats the migrated ids as present (a re-append is all duplicates)."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from hub.bootstrap import open_runtime
from hub.kernel.binding import cluster_id
from hub.kernel.db import CORE_MIGRATIONS, migrate, open_pool
from hub.kernel.log import event_key, topic_for
from hub.kernel.namespace import Namespace
from schemas.dispatch import UnitDispatched
from schemas.envelope import new_event
from tests.conftest import session_settings

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


async def test_the_text_index_of_an_existing_database_moves_into_the_compact_one(tmp_path: Path) -> None:
    settings = session_settings()
    schema = settings.core_schema
    old = tmp_path / "core-before-0004"
    old.mkdir()
    for f in sorted(CORE_MIGRATIONS.directory.glob("*.sql")):
        if int(f.name[:4]) < 4:
            shutil.copy(f, old / f.name)
    events = [
        new_event(UnitDispatched(incident_id="sea:m1", unit_id=f"u{n}", at=T0), source="cad/test",
                  record_id=f"mig-{n}")
        for n in range(3)
    ]
    odd = events[2].model_copy(update={"id": f"legacy-{uuid.uuid4().hex}"})  # not a uuid
    topic = topic_for(settings.kafka.topic_prefix, events[0])
    try:
        async with open_pool(settings, role="owner", max_size=1) as pool:
            assert await migrate(pool, component="core", package_dir=old, schema=schema) == [1, 2, 3]
            await pool.executemany(
                f'INSERT INTO {schema}.event_index (event_id, event_type, topic, "partition", "offset",'
                " recorded_at) VALUES ($1, $2, $3, $4, $5, $6)",
                [(events[0].id, events[0].type, topic, 0, 7, T0), (odd.id, odd.type, topic, 1, 9, T0),
                 (events[1].id, events[1].type, topic, None, None, T0)],  # a claim never completed
            )
            await pool.execute(  # this state belongs to this cluster (its log is not the point here)
                f"INSERT INTO {schema}.kafka_binding (cluster_id, bootstrap) VALUES ($1, $2)",
                await cluster_id(settings), settings.kafka.bootstrap,
            )
        async with open_runtime(settings) as rt:  # migrates the rest (0004 among them)
            rows = await rt.pool.fetch(
                f'SELECT event_id, event_type, topic, "partition", "offset" FROM {schema}.indexed_events'
            )
            assert sorted(tuple(r.values()) for r in rows) == sorted([
                (events[0].id, events[0].type, topic, 0, 7),
                (str(event_key(odd.id)), odd.type, topic, 1, 9),
            ])
            assert await rt.pool.fetchval("SELECT to_regclass($1)", f"{schema}.event_index_v1") is None
            again = await rt.log.append([events[0], odd, events[1]])
            # the two migrated ids are present; the uncompleted claim was never a fact
            assert [d.id for d in again.duplicates] == [events[0].id, odd.id]
            assert [a.envelope.id for a in again.appended] == [events[1].id]
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)
