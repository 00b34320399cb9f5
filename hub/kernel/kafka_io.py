"""Reading Kafka: the one place where the hub discovers partitions, reads offsets and scans
records (the event log, the sealer and verifier, the projections' replay and lag, the
consent view all go through here).

- Partition discovery uses the admin API (``describe_topics``): a consumer's ``topics()``
  does not refresh the consumer's own metadata, so ``partitions_for_topic`` can answer
  None for a topic that exists. Topics that do not exist have no partitions.
- Readers are plain consumers without a group (explicit assignment, no offset commits),
  fetching in large batches (``getmany``).
- A scan reads up to the end offsets seen when it started (or the ``ends`` it is given),
  so it always terminates, even while producers keep appending.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from hub.kernel.kafka import KafkaClients

# A reader holds about two fetches' worth of records (the one being consumed, the next one
# prefetched), each record as a Python object several times its size on the wire: 64/16 MiB
# fetches put a full scan at 350-450 MiB whatever the log's length; 8/1 MiB (Kafka's own
# per-partition default) read as fast on one broker and keep it near 100 MiB.
FETCH_MAX_BYTES = 8 * 1024 * 1024
PARTITION_FETCH_MAX_BYTES = 1024 * 1024
FETCH_AT_IDLE_POLLS = 120  # fetch_at gives up after this many empty 0.5 s polls of one position

Offsets = dict[TopicPartition, int]


def reader_consumer(clients: KafkaClients, role: str) -> AIOKafkaConsumer:
    """A consumer (not started) without a group: explicit assignment, no commits, reading
    from the beginning, with large fetches."""
    return clients.consumer(
        role,
        group_id=None,
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
        fetch_max_wait_ms=100,
    )


async def topic_partitions(clients: KafkaClients, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the named topics that exist (missing topics are left out), sorted."""
    if not topics:
        return []
    admin = clients.admin("partitions")
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


async def offset_bounds(
    clients: KafkaClients, tps: Sequence[TopicPartition], *, role: str = "offsets"
) -> tuple[Offsets, Offsets]:
    """(log-start offsets, log-end offsets) of each partition."""
    if not tps:
        return {}, {}
    consumer = reader_consumer(clients, role)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(list(tps)), await consumer.end_offsets(list(tps))
    finally:
        await consumer.stop()


async def end_offsets(
    clients: KafkaClients, tps: Sequence[TopicPartition], *, role: str = "offsets"
) -> Offsets:
    """The log-end offset of each partition."""
    if not tps:
        return {}
    consumer = reader_consumer(clients, role)
    await consumer.start()
    try:
        return await consumer.end_offsets(list(tps))
    finally:
        await consumer.stop()


async def scan_records(
    clients: KafkaClients,
    topics: Sequence[str],
    *,
    role: str,
    from_offsets: Mapping[Any, int] | None = None,
    from_time: datetime | None = None,
    merge: bool = False,
) -> AsyncIterator[ConsumerRecord]:
    """Raw records of every partition of ``topics`` (see :func:`scan_partitions`)."""
    tps = await topic_partitions(clients, topics)
    async for rec in scan_partitions(
        clients, tps, role=role, from_offsets=from_offsets, from_time=from_time, merge=merge
    ):
        yield rec


async def scan_partitions(
    clients: KafkaClients,
    tps: Sequence[TopicPartition],
    *,
    role: str,
    from_offsets: Mapping[Any, int] | None = None,
    from_time: datetime | None = None,
    ends: Mapping[TopicPartition, int] | None = None,
    merge: bool = False,
) -> AsyncIterator[ConsumerRecord]:
    """Raw records of ``tps`` through a consumer of their own (started and stopped here).

    Start: ``from_offsets`` (keys ``TopicPartition`` or ``(topic, partition)``; partitions
    not named start at their beginning), else the first record whose timestamp is at or
    after ``from_time``, else the beginning. End: ``ends`` (one per partition in ``tps``),
    else the end offsets seen at the start. Per-partition offset order always holds;
    ``merge=True`` additionally interleaves partitions by (timestamp, position of the
    partition in ``tps``, offset)."""
    tps = list(tps)
    if not tps:
        return
    consumer = reader_consumer(clients, role)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        stop = dict(ends) if ends is not None else await consumer.end_offsets(tps)
        if from_offsets:
            assigned = set(tps)
            for key, off in from_offsets.items():
                tp = key if isinstance(key, TopicPartition) else TopicPartition(*key)
                if tp in assigned:
                    consumer.seek(tp, off)
        elif from_time is not None:
            found = await consumer.offsets_for_times({tp: int(from_time.timestamp() * 1000) for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else stop[tp])
        reader = _merged if merge else _in_batches
        async for rec in reader(consumer, tps, stop):
            yield rec
    finally:
        await consumer.stop()


async def fetch_at(
    clients: KafkaClients, positions: Iterable[tuple[TopicPartition, int]], *, role: str
) -> dict[tuple[TopicPartition, int], ConsumerRecord]:
    """The records at the given (partition, offset) positions, through one consumer (seek per
    position; records of one fetch that are also wanted are kept, so nearby positions cost one
    fetch). Positions outside the partition's current log (deleted, not yet written) are
    absent from the answer. Meant for a few positions, not for scanning."""
    wanted: dict[TopicPartition, set[int]] = {}
    for tp, off in positions:
        wanted.setdefault(tp, set()).add(off)
    if not wanted:
        return {}
    out: dict[tuple[TopicPartition, int], ConsumerRecord] = {}
    tps = sorted(wanted)
    consumer = reader_consumer(clients, role)
    await consumer.start()
    try:
        consumer.assign(tps)
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        for tp in tps:
            for off in sorted(wanted[tp]):
                if (tp, off) in out or not starts[tp] <= off < ends[tp]:
                    continue
                consumer.seek(tp, off)
                idle = 0
                while (tp, off) not in out and await consumer.position(tp) <= off:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    idle = 0 if batch.get(tp) else idle + 1
                    if idle >= FETCH_AT_IDLE_POLLS:
                        raise TimeoutError(f"{tp.topic}[{tp.partition}]@{off}: no record fetched")
                    for rec in batch.get(tp, []):
                        if rec.offset in wanted[tp]:
                            out[(tp, rec.offset)] = rec
    finally:
        await consumer.stop()
    return out


def lag(
    ends: Mapping[TopicPartition, int], stored: Mapping[tuple[str, int], int]
) -> dict[TopicPartition, int]:
    """Records between the stored positions (``(topic, partition) → next offset``; a partition
    without one starts at 0) and the log ends, per partition (never negative)."""
    return {tp: max(0, end - stored.get((tp.topic, tp.partition), 0)) for tp, end in ends.items()}


async def _behind(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], ends: Mapping[TopicPartition, int]
) -> set[TopicPartition]:
    """The partitions whose position is still before their end."""
    return {tp for tp in tps if await consumer.position(tp) < ends[tp]}


async def _in_batches(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: Mapping[TopicPartition, int]
) -> AsyncIterator[ConsumerRecord]:
    active = await _behind(consumer, tps, ends)
    while active:
        batch = await consumer.getmany(*active, timeout_ms=500)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset >= ends[tp]:
                    break
                yield rec
        active = await _behind(consumer, active, ends)


async def _merged(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: Mapping[TopicPartition, int]
) -> AsyncIterator[ConsumerRecord]:
    order = {tp: i for i, tp in enumerate(tps)}
    buffers: dict[TopicPartition, deque[ConsumerRecord]] = {tp: deque() for tp in tps}
    pending = await _behind(consumer, tps, ends)  # partitions with an empty buffer and more to read
    heap: list[tuple[int, int, int, TopicPartition]] = []

    def push(tp: TopicPartition) -> None:
        head = buffers[tp][0]
        heapq.heappush(heap, (head.timestamp, order[tp], head.offset, tp))

    while True:
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                buffers[tp].extend(r for r in records if r.offset < ends[tp])
            for tp in list(pending):
                if buffers[tp]:
                    pending.discard(tp)
                    push(tp)
                elif await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        if not heap:
            return
        *_, tp = heapq.heappop(heap)
        yield buffers[tp].popleft()
        if buffers[tp]:
            push(tp)
        elif await consumer.position(tp) < ends[tp]:
            pending.add(tp)
