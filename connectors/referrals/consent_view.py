"""A live :class:`~connectors.referrals.consent.ConsentBook` fed from the consent topic.

The view reads every partition of ``<prefix>.facts.consent`` from the beginning (explicit
assignment, no consumer group) and keeps following it. :meth:`ConsentView.catch_up` reads
up to the end offsets *as of the call*, so a gate decision always sees every consent fact
appended before it was asked — a consent appended just before the referral it covers is
never missed because the two topics are consumed at different speeds.

Only consent facts the hub appended count: every record is checked by a
:class:`hub.kernel.quarantine.RecordGuard` before it is applied; a forged one (no valid
record MAC, or a pre-MAC record the event index does not confirm) is quarantined and
never reaches the book, so it can never unlock a disclosure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.referrals.consent import ConsentBook
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import reader_consumer, topic_partitions
from hub.kernel.log import CorruptRecordError, decode_record
from hub.kernel.quarantine import Quarantine, RecordGuard
from schemas.topics import fact_topic

log = logging.getLogger(__name__)


class ConsentView:
    """The consent book of ``<topic_prefix>.facts.consent``, read with ``clients`` (the
    process's Kafka client factory); every record is checked by ``guard`` first and the
    refused ones go to ``quarantine``."""

    def __init__(
        self,
        clients: KafkaClients,
        topic_prefix: str,
        *,
        guard: RecordGuard,
        quarantine: Quarantine,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.clients = clients
        self.guard = guard
        self.quarantine = quarantine
        self.topic = fact_topic(topic_prefix, "consent")
        self.book = ConsentBook()
        self.on_change = on_change
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.corrupt_records = 0

    async def start(self) -> None:
        self._tps = await topic_partitions(self.clients, [self.topic])
        consumer = reader_consumer(self.clients, "consent-view")
        await consumer.start()
        self._consumer = consumer
        if self._tps:
            consumer.assign(self._tps)
            await consumer.seek_to_beginning(*self._tps)
        await self.catch_up()
        self._task = asyncio.create_task(self._follow(), name="consent-view")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def catch_up(self) -> None:
        """Apply every consent fact appended before this call."""
        consumer = self._consumer
        if consumer is None or not self._tps:
            return
        async with self._lock:
            ends = await consumer.end_offsets(self._tps)
            while True:
                behind = [tp for tp in self._tps if await consumer.position(tp) < ends[tp]]
                if not behind:
                    return
                await self._apply(await consumer.getmany(*behind, timeout_ms=200))

    async def _follow(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                async with self._lock:
                    batch = await consumer.getmany(timeout_ms=200) if self._tps else {}
                    await self._apply(batch)
                if not batch:
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following: a broker hiccup must not stop consent tracking
                log.exception("consent view: read failed; retrying")
                await asyncio.sleep(1.0)

    async def _apply(self, batch: dict) -> None:
        """Apply one fetched batch (under the lock: a quarantine write must not let a
        ``catch_up`` return before the batch it covers was judged)."""
        changed = False
        for records in batch.values():
            for rec, refused in zip(records, await self.guard.check(records), strict=True):
                if refused is not None:
                    await self.quarantine.put(rec, refused)
                    continue
                try:
                    event = decode_record(rec).envelope.payload()
                except (CorruptRecordError, ValueError, KeyError):
                    self.corrupt_records += 1
                    log.error(
                        "consent view: unreadable record %s[%s]@%s", rec.topic, rec.partition, rec.offset
                    )
                    continue
                changed = self.book.apply(event) or changed
        if changed and self.on_change is not None:
            self.on_change()
