"""Small Kafka helpers of the projections: partition discovery through the admin API
(``AIOKafkaConsumer.topics()`` does not refresh the consumer's own metadata, so
``partitions_for_topic`` can answer None for a topic that exists) and a batch reader
over explicitly assigned partitions, up to the end offsets seen at the start."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_MAX_BYTES = 16 * 1024 * 1024


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the named topics that exist (missing topics are left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    out = []
    for t in described:
        if t["error_code"] == 0:
            out += [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
    return sorted(out)


async def read_to_end(
    bootstrap: str, topics: Sequence[str], *, client_id: str = "coresponder-hub-reader"
) -> AsyncIterator[ConsumerRecord]:
    """All records of ``topics`` from the beginning up to the end offsets at call time,
    per partition in offset order, fetched in large batches (``getmany``)."""
    tps = await topic_partitions(bootstrap, topics)
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        active = {tp for tp in tps if ends[tp] > 0}
        while active:
            batch = await consumer.getmany(*active, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset < ends[tp]:
                        yield rec
            active = {tp for tp in active if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The log end offset of each partition."""
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(list(tps))
    finally:
        await consumer.stop()
