"""The projector: consumes the fact topics in a consumer group and applies batches to the
read models effectively once, then publishes the outcome topic.

Why our own aiokafka loop and not faust agents: the read models' consumed positions live
in PostgreSQL and commit in the same transaction as the rows; a faust worker commits
offsets to Kafka on its own schedule, gives no supported hook to seek to externally
stored positions before its fetcher starts, and its per-event agents are reported at only
hundreds of events per second. Here the group's rebalance listener seeks every assigned
partition to its stored position before fetching, each ``getmany`` (up to
``projections.batch_size`` records) is one PostgreSQL transaction, and the Kafka group
offsets are committed afterwards only for lag monitoring. The outcome topic is
republished for the months a batch changed, at most every ``PUBLISH_INTERVAL`` seconds
while busy and whenever the log is drained (suppression works on whole month tables).

Bad records (not a valid envelope, unknown type, payload that fails validation) are
dead-lettered (``<prefix>.deadletter.hub``, stage ``project``) and their offset is still
consumed, so nothing blocks and nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from hub.log import CorruptRecordError, decode_record, family_topics
from hub.metrics import PROJECTION_LAG
from hub.runtime import Runtime
from hub.settings import Settings
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.publisher import OutcomePublisher
from projections.store import Consumed, ReadModelStore, migrate_read_models
from schemas.deadletter import DeadLetter, deadletter_id

log = logging.getLogger(__name__)
PUBLISH_INTERVAL = 2.0  # seconds between outcome-topic publications while busy


def group_id(settings: Settings, schema: str) -> str:
    """One consumer group per (topic prefix, schema): two schemas never share offsets."""
    return f"{settings.projections.consumer_group}.{settings.kafka.topic_prefix}.{schema}"


@dataclass
class ProjectorStats:
    batches: int = 0
    records: int = 0
    new_facts: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    published: int = 0
    months: set = field(default_factory=set)


class _SeekToStored(ConsumerRebalanceListener):
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.projector.seek_to_stored(list(assigned))


class Projector:
    """One projector worker. Several workers with the same settings and schema share the
    partitions of the fact topics; the result is the same as one worker's."""

    def __init__(self, rt: Runtime, schema: str | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.schema = schema or rt.settings.postgres.schema_
        self.store = ReadModelStore(rt.pool, self.schema, FoldConfig.from_settings(rt.settings))
        self.publisher = OutcomePublisher(rt.settings, rt.pool, self.schema)
        self.topics = family_topics(rt.settings.kafka.topic_prefix)
        self.consumer: AIOKafkaConsumer | None = None
        self.stats = ProjectorStats()
        self._pending: set = set()
        self._published_at = 0.0

    async def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        """Start every assigned partition at the position stored with the read models.
        The group's Kafka offsets normally agree (they are committed after each batch);
        where they do not (a crash between the two commits, a rebuilt schema), PostgreSQL wins."""
        assert self.consumer is not None
        stored = await self.store.positions()
        moved = 0
        for tp in assigned:
            pos = stored.get((tp.topic, tp.partition))
            committed = await self.consumer.committed(tp)
            if pos is None and committed:
                await self.consumer.seek_to_beginning(tp)
                moved += 1
            elif pos is not None and committed != pos:
                self.consumer.seek(tp, pos)
                moved += 1
        log.info("projector assigned %d partition(s), %d moved to stored positions", len(assigned), moved)

    async def _dead_letter(self, rec: ConsumerRecord, reason: str) -> None:
        raw = rec.value or b""
        ref = f"{rec.topic}[{rec.partition}]@{rec.offset}"
        dl = DeadLetter(
            id=deadletter_id("hub/projections", ref, raw),
            source="hub/projections",
            source_family="hub",
            record_ref=ref,
            stage="project",
            reason=reason[:500],
            raw=self.rt.deadletter_sealer.seal(raw),
            at=datetime.now(UTC),
        )
        if await self.rt.log.dead_letter(dl):
            self.stats.dead_lettered += 1

    async def _to_consumed(self, rec: ConsumerRecord) -> Consumed:
        try:
            fact = fact_from_envelope(decode_record(rec).envelope)
        except CorruptRecordError as exc:
            await self._dead_letter(rec, str(exc))
            return Consumed(rec.topic, rec.partition, rec.offset, None)
        except Exception as exc:  # unknown type / payload fails validation
            await self._dead_letter(rec, f"cannot project event: {type(exc).__name__}: {str(exc)[:300]}")
            return Consumed(rec.topic, rec.partition, rec.offset, None)
        return Consumed(rec.topic, rec.partition, rec.offset, fact)

    async def lag(self) -> int:
        """Records between the stored positions and the log end, over every fact partition."""
        assert self.consumer is not None
        tps = [TopicPartition(t, p) for t in self.topics
               for p in sorted(self.consumer.partitions_for_topic(t) or ())]
        if not tps:
            return 0
        ends = await self.consumer.end_offsets(tps)
        stored = await self.store.positions()
        total = 0
        for tp in tps:
            behind = max(0, ends[tp] - stored.get((tp.topic, tp.partition), 0))
            PROJECTION_LAG.labels(tp.topic, str(tp.partition)).set(behind)
            total += behind
        return total

    async def run(
        self, *, until_caught_up: bool = False, stop: asyncio.Event | None = None
    ) -> ProjectorStats:
        """Consume until ``stop`` is set (or, with ``until_caught_up``, until no partition
        has a record the read models have not applied)."""
        await migrate_read_models(self.rt.pool, self.schema)
        stop = stop or asyncio.Event()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            client_id=f"{self.settings.kafka.client_id}-projector",
            group_id=group_id(self.settings, self.schema),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.projections.batch_size,
            fetch_max_wait_ms=200,
            metadata_max_age_ms=5000,
        )
        await self.publisher.start()
        await self.consumer.start()
        try:
            self.consumer.subscribe(self.topics, listener=_SeekToStored(self))
            self.stats.published += await self.publisher.publish(None)
            while not stop.is_set():
                batch = await self.consumer.getmany(
                    timeout_ms=300, max_records=self.settings.projections.batch_size
                )
                records = [r for recs in batch.values() for r in recs]
                if records:
                    await self._apply(records)
                    continue
                await self._publish_pending()  # idle: bring the outcome topic up to date
                if until_caught_up and await self.lag() == 0:
                    break
            await self._publish_pending()
        finally:
            await self.consumer.stop()
            await self.publisher.stop()
        return self.stats

    async def _publish_pending(self) -> None:
        if self._pending:
            months, self._pending = self._pending, set()
            self.stats.published += await self.publisher.publish(months)
        self._published_at = time.monotonic()

    async def _apply(self, records: list[ConsumerRecord]) -> None:
        assert self.consumer is not None
        # records a previous owner already applied (re-delivered around a rebalance) are
        # not even decoded; the store re-checks under its lock
        stored = await self.store.positions()
        fresh = [r for r in records if r.offset >= stored.get((r.topic, r.partition), 0)]
        self.stats.skipped += len(records) - len(fresh)
        consumed = [await self._to_consumed(r) for r in fresh]
        result = await self.store.apply_batch(consumed)
        s = self.stats
        s.batches += 1
        s.records += len(records)
        s.new_facts += result.new_facts
        s.duplicates += result.duplicate_facts
        s.skipped += result.skipped_positions
        s.months |= result.months
        self._pending |= result.months
        if self._pending and time.monotonic() - self._published_at >= PUBLISH_INTERVAL:
            await self._publish_pending()
        if not fresh:
            return
        # Kafka group offsets follow the stored positions (monitoring only; PostgreSQL is the truth)
        ends: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            ends[tp] = max(ends.get(tp, 0), r.offset + 1)
        try:
            await self.consumer.commit(ends)
        except Exception as exc:  # a rebalance in progress: the stored positions are what count
            log.info("group offset commit skipped: %s", exc)


async def project(rt: Runtime, *, schema: str | None = None, until_caught_up: bool = False,
                  stop: asyncio.Event | None = None) -> ProjectorStats:
    """Run one projector worker (the body of ``hub project``)."""
    return await Projector(rt, schema).run(until_caught_up=until_caught_up, stop=stop)
