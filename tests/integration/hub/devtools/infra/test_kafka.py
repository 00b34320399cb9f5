"""The local broker lifecycle through the same code ``hub infra`` uses, on a SECOND broker
(ports 19092/19093, its own state dir) so the shared broker is never disturbed:
idempotent ``up``, SIGKILL durability of every acknowledged record, clean ``down`` with
data surviving to the next ``up``, and a clear error when the port is taken."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import TopicPartition

from hub.devtools.infra import InfraError, kafka
from hub.devtools.infra.proc import is_alive, read_pid
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import Settings
from hub.kernel.topics import ensure_topics
from schemas.topics import fact_topic

pytestmark = pytest.mark.integration

PORT, CONTROLLER_PORT = 19092, 19093


def second_broker(
    settings: Settings, state_dir: Path, port: int = PORT, controller: int = CONTROLLER_PORT
) -> Settings:
    return settings.model_copy(
        update={
            "state_dir": state_dir,
            "kafka": settings.kafka.model_copy(
                update={
                    "bootstrap": f"127.0.0.1:{port}",
                    "credentials_dir": state_dir / "keys",  # its own CA and SCRAM passwords
                    "controller_port": controller,
                    "heap": "256m",
                    "topic_prefix": "durability",
                    "partitions": 2,
                }
            ),
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def broker2(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    s2 = second_broker(settings, tmp_path / "state")
    try:
        yield s2
    finally:
        await asyncio.to_thread(kafka.down, s2, 30)


async def produce(s: Settings, topic: str, n: int, tag: str) -> set[tuple[int, int, bytes]]:
    """Send ``n`` records with acks=all + idempotence; return what the broker acknowledged."""
    producer = KafkaClients(s.kafka).producer("durability")  # acks=all, idempotent
    await producer.start()
    try:
        futures = [
            await producer.send(topic, f"{tag}-{i}".encode(), key=f"incident-{i % 17}".encode())
            for i in range(n)
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(m.partition, m.offset, f"{tag}-{i}".encode()) for i, m in enumerate(metas)}


async def consume_all(s: Settings, topic: str) -> set[tuple[int, int, bytes]]:
    consumer = KafkaClients(s.kafka).consumer("durability")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(s.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        got: set[tuple[int, int, bytes]] = set()
        async with asyncio.timeout(60):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    got.update((tp.partition, r.offset, r.value) for r in records)
        return got
    finally:
        await consumer.stop()


async def test_sigkill_keeps_acknowledged_records_and_down_up_keeps_data(broker2: Settings) -> None:
    first = await kafka.up(broker2)
    assert first.healthy and first.pid is not None
    layout = kafka.KafkaLayout.of(broker2)
    assert kafka.is_formatted(layout)
    assert "process.roles=broker,controller" in layout.properties.read_text()

    again = await kafka.up(broker2)  # idempotent: the running broker is kept
    assert again.pid == first.pid and again.cluster_id == first.cluster_id

    report = await ensure_topics(broker2)
    assert report.ok and len(report.created) == len(kafka_topics(broker2))
    topic = fact_topic("durability", "dispatch")
    acked = await produce(broker2, topic, 3000, "before-kill")

    assert kafka.kill(broker2) == first.pid
    assert not is_alive(first.pid)
    assert read_pid(layout.pid_file) == first.pid  # stale pid file left behind, as after a crash
    status = await kafka.probe(broker2, timeout=2)
    assert not status.healthy and status.pid is None

    restarted = await kafka.up(broker2)
    assert restarted.healthy and restarted.pid != first.pid
    assert restarted.cluster_id == first.cluster_id  # same data dir, not re-formatted
    assert acked <= await consume_all(broker2, topic)

    acked |= await produce(broker2, topic, 500, "after-restart")
    assert await asyncio.to_thread(kafka.down, broker2) is True
    assert not is_alive(restarted.pid) and not layout.pid_file.exists()
    assert not (await kafka.probe(broker2, timeout=2)).reachable
    assert await asyncio.to_thread(kafka.down, broker2) is False  # nothing left to stop

    await kafka.up(broker2)
    assert await consume_all(broker2, topic) == acked  # clean restart: exactly what was acknowledged
    assert (await ensure_topics(broker2)).created == []


def kafka_topics(s: Settings) -> list[str]:
    from hub.kernel.topics import catalogue_for

    return [t.name for t in catalogue_for(s)]


async def test_port_taken_by_another_process_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        s3 = second_broker(
            settings, tmp_path / "state", port=port, controller=port + 1 if port < 65535 else 19999
        )
        with pytest.raises(InfraError, match=rf"port 127\.0\.0\.1:{port} is already in use by pid \d+"):
            await kafka.up(s3)
    assert not kafka.KafkaLayout.of(s3).pid_file.exists()
