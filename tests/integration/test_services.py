"""The shared services really work: Kafka round trip with an idempotent acks=all producer,
PostgreSQL write/read with asyncpg, the migration runner, and the session fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from hub.kernel import db
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import Settings
from hub.kernel.topics import TopicReport, catalogue_for

pytestmark = pytest.mark.integration


async def test_catalogue_created_for_session_prefix(settings: Settings, topics: TopicReport) -> None:
    names = {s.name for s in catalogue_for(settings)}
    assert set(topics.created) | set(topics.matching) == names
    assert all(n.startswith(settings.kafka.topic_prefix + ".") for n in names)


async def test_idempotent_acks_all_round_trip(settings: Settings, topics: TopicReport) -> None:
    # a topic of its own: other tests of the session append to the catalogue topics
    topic = f"{settings.kafka.topic_prefix}.infra.roundtrip"
    partitions = 3
    admin = KafkaClients(settings.kafka).admin("test")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, settings.kafka.replication_factor)])
    finally:
        await admin.close()
    producer = KafkaClients(settings.kafka).producer("test")  # acks=all, idempotent
    await producer.start()
    sent = {}
    try:
        for i in range(50):
            key = f"incident-{i % 5}".encode()
            meta = await producer.send_and_wait(topic, f"event-{i}".encode(), key=key)
            sent[(meta.partition, meta.offset)] = (key, f"event-{i}".encode())
    finally:
        await producer.stop()
    # one key → one partition (order where it matters)
    by_key: dict[bytes, set[int]] = {}
    for (partition, _), (key, _) in sent.items():
        by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in by_key.values())

    consumer = KafkaClients(settings.kafka).consumer("test")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = {}
        async with asyncio.timeout(30):
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for r in records:
                        got[(tp.partition, r.offset)] = (r.key, r.value)
    finally:
        await consumer.stop()
    assert got == sent  # exactly once, in offset order per partition, nothing else


async def test_postgres_write_read(pg_pool: asyncpg.Pool, settings: Settings) -> None:
    schema = f"{settings.kafka.topic_prefix}_infra_rw"
    async with pg_pool.acquire() as conn:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".notes (id uuid PRIMARY KEY, body text NOT NULL)')
        rows = [(uuid4(), f"note {i}") for i in range(100)]
        await conn.copy_records_to_table("notes", schema_name=schema, records=rows)
        back = await conn.fetch(f'SELECT id, body FROM "{schema}".notes ORDER BY body')
    assert sorted((r["id"], r["body"]) for r in back) == sorted(rows)


async def test_migrations_apply_once_even_concurrently(
    pg_pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "0001_create.sql").write_text(
        "CREATE TABLE {schema}.counter (id int PRIMARY KEY, n int NOT NULL);\n"
        "INSERT INTO {schema}.counter VALUES (1, 0);"
    )
    (tmp_path / "0002_bump.sql").write_text("UPDATE {schema}.counter SET n = n + 1 WHERE id = 1;")
    schema = f"{settings.kafka.topic_prefix}_infra_mig"
    results = await asyncio.gather(
        *(db.migrate(pg_pool, component="infra-test", package_dir=tmp_path, schema=schema) for _ in range(4))
    )
    assert sorted(v for r in results for v in r) == [1, 2]  # each applied exactly once overall
    assert await db.migrate(pg_pool, component="infra-test", package_dir=tmp_path, schema=schema) == []
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT n FROM {schema}.counter WHERE id = 1") == 1
        versions = await conn.fetch(
            f"SELECT version FROM {schema}.schema_migrations WHERE component = 'infra-test' ORDER BY version"
        )
    assert [r["version"] for r in versions] == [1, 2]


async def test_failed_migration_rolls_back_and_reports(
    pg_pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE {schema}.a (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE {schema}.b (id int); SELECT no_such_function();")
    schema = f"{settings.kafka.topic_prefix}_infra_bad"
    with pytest.raises(db.MigrationError, match="0002_bad"):
        await db.migrate(pg_pool, component="infra-test", package_dir=tmp_path, schema=schema)
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass($1)", f"{schema}.a") is not None
        assert await conn.fetchval("SELECT to_regclass($1)", f"{schema}.b") is None  # rolled back
        assert await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_migrations") == 1
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE {schema}.a (id bigint);")
    with pytest.raises(db.MigrationError, match="changed after it was applied"):
        await db.migrate(pg_pool, component="infra-test", package_dir=tmp_path, schema=schema)
