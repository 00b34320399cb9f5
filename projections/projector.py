"""The projector worker (``hub project``): runs the faust app of :mod:`projections.app`,
whose agents hand batches of fact records to :meth:`Projector.apply_events`; that shell
decodes them, dead-letters bad ones and applies the rest to the read models effectively
once; it also republishes the outcome topic.

Effectively once comes from PostgreSQL, not from faust:

- every batch is ONE transaction holding the rows and the next offset of each partition
  (:meth:`projections.store.ReadModelStore.apply_batch`); records below the stored
  position are skipped (also before decoding, here);
- ``stream.take_events`` acks a batch only after :meth:`apply_events` returned, so the
  Kafka offsets faust commits on its own (every ``COMMIT_INTERVAL``) never run ahead of
  the stored positions — they are an optimisation and a lag monitor, not the truth;
- after every partition assignment :meth:`Projector.on_rebalance_complete` commits the
  stored positions to the group for the assigned partitions; faust then seeks every
  partition to its committed offset (``consumer.perform_seek``) before the flow resumes,
  so the fetch starts at PostgreSQL's position. (A plain ``consumer.seek`` in faust's
  ``on_partitions_assigned`` signal races with that ``perform_seek`` — faust's recovery
  service runs it concurrently and it can win — and faust seeks back to the committed
  offsets whenever its flow is stopped, so committing is the one lever that holds
  way to move it, see :meth:`Projector.on_rebalance_complete`.)
- a batch that fails to apply stops the worker with the error (its events would
  otherwise be acked past the stored positions while the worker kept consuming); the
  restart resumes from the stored positions. Stopping is bounded: faust does not wait for
  the failed batch's acks (``stream_wait_empty=False``, :mod:`projections.app`) and
  ``app.stop()`` gets :data:`STOP_TIMEOUT` seconds, so ``hub project`` exits non-zero
  within a bound and its supervisor restarts it.

Liveness: ``hub_projection_progress_timestamp_seconds`` is set whenever a batch was applied
and whenever the worker finds itself caught up (no fact record left to apply): a projector
whose gauge is older than a few minutes is stuck, whatever its process looks like. The
worker watches the same thing itself: without progress for ``probe_stale_s`` (when ``/livez``
starts failing) it stops with :class:`ProjectorStalled` — a consumer that never fetches again,
a batch that never returns, an outage that never ends — so ``hub project`` exits non-zero and
its supervisor restarts it, with or without probes; it never sits there silently.

Only facts the hub appended are folded: every fresh record is checked first
(:class:`hub.kernel.quarantine.RecordGuard`: a valid record MAC, or a pre-MAC record the
event index confirms at its offset); a record that fails is quarantined
(``<prefix>.deadletter.quarantine``, ``hub_records_quarantined_total{consumer="projector"}``)
and its offset consumed, never folded. Bad records (not a valid envelope, unknown type,
payload that fails validation) are dead-lettered (``<prefix>.deadletter.hub``, stage
``project``) and their offset is still consumed, so nothing blocks and nothing is
silently dropped. The outcome topic is republished for the months the batches changed once
the worker is idle and caught up (no fact partition behind: a backlog being replayed is not
released in intermediate states, each of which would constrain the next release), in a task
of its own (no batch and no supervision tick waits for it; a failed publication stops the
worker like a failed batch); only closed months are released (:mod:`projections.releases`,
suppression works on whole month tables), so every ``RELEASE_CHECK_INTERVAL`` the worker
also releases the months that closed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from asyncpg.pool import PoolConnectionProxy

from hub.kernel.deadletters import describe_error, describe_failure
from hub.kernel.errors import TransientError
from hub.kernel.gcpolicy import freeze_startup_heap
from hub.kernel.kafka_io import end_offsets, lag, topic_partitions
from hub.kernel.log import CorruptRecordError, decode_record, family_topics
from hub.kernel.metrics import PROJECTION_LAG, PROJECTION_PROGRESS
from hub.kernel.runtime import Runtime
from projections.app import create_app
from projections.config import FoldConfig
from projections.facts import fact_from_envelope
from projections.publisher import OutcomePublisher
from projections.store import Consumed, ReadModelStore
from schemas.deadletter import DeadLetter, deadletter_id

log = logging.getLogger(__name__)
RELEASE_CHECK_INTERVAL = 600.0  # seconds between checks for months that closed meanwhile
TICK = 0.25  # seconds between idle checks (outcome publication, --until-caught-up)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0  # seconds app.stop() may take before the worker gives up on faust
LIVENESS_CHECK = 5.0  # seconds between lag checks of an idle worker (progress gauge)
WATCHDOG_TICK = 1.0  # seconds between the watchdog's looks at the last progress
STALL_LOG = "projector stalled, stopping"  # the watchdog's log line (the fault suite counts it)


class ProjectorStalled(TransientError, RuntimeError):
    """The worker made no progress (no batch applied, never found caught up) for its stall
    bound; the restart resumes from the stored positions."""


@dataclass
class ProjectorStats:
    batches: int = 0
    records: int = 0
    new_facts: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    quarantined: int = 0
    published: int = 0
    months: set = field(default_factory=set)


def consumer_record(message: Any) -> ConsumerRecord:
    """A faust message as the aiokafka record :func:`hub.kernel.log.decode_record` reads
    (faust keeps the timestamp in seconds, Kafka in milliseconds)."""
    return ConsumerRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=round(message.timestamp * 1000),
        timestamp_type=message.timestamp_type,
        key=message.key,
        value=message.value,
        checksum=message.checksum,
        serialized_key_size=message.serialized_key_size,
        serialized_value_size=message.serialized_value_size,
        headers=tuple(message.headers or ()),
    )


class Projector:
    """One projector worker. Several workers with the same settings and schema share the
    partitions of the fact topics (one faust consumer group); the result is the same as
    one worker's."""

    def __init__(self, rt: Runtime, schema: str | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.schema = schema or rt.settings.postgres.schema_
        self.store = ReadModelStore(rt.pool, self.schema, FoldConfig.from_settings(rt.settings), rt.keyring)
        self.publisher = OutcomePublisher(rt.settings, rt.pool, self.schema, rt.kafka, keys=rt.keyring)
        self.topics = family_topics(rt.settings.kafka.topic_prefix)
        self.guard = rt.record_guard()
        self.quarantine = rt.quarantine("projector")
        self.stats = ProjectorStats()
        self.app: faust.App | None = None
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._pending: set = set()
        self._released_at = time.monotonic()  # run() publishes every closed month on start
        self._publish_lock = asyncio.Lock()
        self._publishing: asyncio.Task[None] | None = None
        self._busy_at = 0.0
        self._progress_at = time.monotonic()  # a batch applied, or found caught up
        self.stall_s = rt.settings.probe_stale_s
        self._tps: list[TopicPartition] = []
        self._tps_at = float("-inf")
        self.seeks = 0  # assignments moved to the stored positions
        self._positions: dict[tuple[str, int], int] | None = None  # stored positions, as last seen
        self._queued: list[tuple[list[ConsumerRecord], asyncio.Future[None]]] = []
        self._applier: asyncio.Task[None] | None = None
        self._conn: PoolConnectionProxy | None = None  # see _connection

    # ------------------------------------------------------------------ faust hooks

    async def on_rebalance_complete(self, app: faust.App, **_: Any) -> None:
        """Move the group's committed offsets of the assigned fact partitions to the stored
        positions. faust sends this signal after every assignment, while the flow is
        still stopped and right before it seeks every partition to its committed offset
        (``consumer.perform_seek`` in the table-recovery service), so the fetch starts at
        PostgreSQL's position. A partition without a stored position is committed at 0
        and sought to 0 (the earliest record, via ``auto_offset_reset`` if the log start
        moved)."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic in self.topics]
        if not tps:
            return
        stored = await self.store.positions()
        self._positions = dict(stored)  # another worker may have moved them meanwhile
        offsets = {tp: stored.get((tp.topic, tp.partition), 0) for tp in tps}
        try:
            # faust's only entry that commits given offsets (its public commit() commits acks)
            ok = await app.consumer._commit(offsets)  # type: ignore[attr-defined]  # not on ConsumerT
            # aiokafka's seek_to_committed leaves a partition alone when its committed
            # offset is 0, so the start of the log is sought explicitly
            for tp, offset in offsets.items():
                if offset == 0:
                    await app.consumer.seek(tp, 0)
        except Exception as exc:  # a newer rebalance: the next completion retries
            ok = False
            log.info("could not move group offsets to stored positions: %s", exc)
        self.seeks += 1
        log.info("projector assigned %d fact partition(s); group offsets %s stored positions",
                 len(tps), "moved to" if ok else "NOT moved to")

    async def apply_events(self, events: Sequence[Any]) -> None:
        """Apply one ``take_events`` batch (the agents' body); returns once it is committed.
        Raises after a failure so that no later batch is acked past the stored positions.

        The adaptive batching window: the batches of every agent (fact topic) join one
        queue, and one applier applies everything queued as ONE transaction. An idle worker
        applies a record as soon as its agent hands it over; while a transaction runs, the
        batches arriving meanwhile queue up and are applied together next — the busier the
        feed, the larger the batch, with no timer."""
        if self.failure is not None:
            raise RuntimeError("projector stopped after a failed batch") from self.failure
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append(([consumer_record(e.message) for e in events], done))
        if self._applier is None or self._applier.done():
            self._applier = asyncio.create_task(self._apply_queued())
        await done

    async def _apply_queued(self) -> None:
        """Apply the queued batches, all of them at a time, until none is left; a failure
        stops the worker and fails every waiting batch."""
        while self._queued:
            taken, self._queued = self._queued, []
            try:
                if self.failure is not None:
                    raise RuntimeError("projector stopped after a failed batch") from self.failure
                await self._apply([rec for records, _ in taken for rec in records])
            except asyncio.CancelledError:
                for _, done in taken:
                    if not done.done():
                        done.cancel()
                raise
            except Exception as exc:
                if self.failure is None:
                    self.failure = exc
                    self._failed.set()
                    log.error("projector batch failed, stopping: %s", describe_failure(exc))
                for _, done in taken:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in taken:
                if not done.done():
                    done.set_result(None)

    # ------------------------------------------------------------------ batches

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
        (new,) = await self.rt.log.dead_letters([dl])
        self.stats.dead_lettered += int(new)

    async def _to_consumed(self, rec: ConsumerRecord) -> Consumed:
        try:
            fact = fact_from_envelope(decode_record(rec).envelope)
        except CorruptRecordError as exc:  # its message names fields and rules, never values
            await self._dead_letter(rec, str(exc))
            return Consumed(rec.topic, rec.partition, rec.offset, None)
        except Exception as exc:  # unknown type / payload fails validation
            await self._dead_letter(rec, f"cannot project event: {describe_error(exc, 300)}")
            return Consumed(rec.topic, rec.partition, rec.offset, None)
        return Consumed(rec.topic, rec.partition, rec.offset, fact)

    async def _apply(self, records: list[ConsumerRecord]) -> None:
        self._busy_at = time.monotonic()
        # records a previous owner already applied (re-delivered around a rebalance) are
        # not even decoded; the store re-checks under its lock. The positions are read once
        # and after every assignment (a new owner's start), then kept from the commits.
        if self._positions is None:
            self._positions = await self.store.positions()
        stored = self._positions
        fresh = [r for r in records if r.offset >= stored.get((r.topic, r.partition), 0)]
        self.stats.skipped += len(records) - len(fresh)
        consumed = []
        for rec, refused in zip(fresh, await self.guard.check(fresh), strict=True):
            if refused is None:
                consumed.append(await self._to_consumed(rec))
            else:  # never folded; its offset is still consumed
                await self.quarantine.put(rec, refused)
                self.stats.quarantined += 1
                consumed.append(Consumed(rec.topic, rec.partition, rec.offset, None))
        result = await self.store.apply_batch(consumed, await self._connection())
        for tp, offset in result.positions.items():
            stored[tp] = max(stored.get(tp, 0), offset)
        s = self.stats
        s.batches += 1
        s.records += len(records)
        s.new_facts += result.new_facts
        s.duplicates += result.duplicate_facts
        s.skipped += result.skipped_positions
        s.months |= result.months
        self._pending |= result.months
        self._busy_at = time.monotonic()
        self._progressed()

    def _progressed(self) -> None:
        self._progress_at = time.monotonic()
        PROJECTION_PROGRESS.set_to_current_time()

    def _stalled(self) -> ProjectorStalled | None:
        """The watchdog (pure but for the clock): past ``stall_s`` without progress."""
        idle = time.monotonic() - self._progress_at
        if idle <= self.stall_s:
            return None
        return ProjectorStalled(
            f"projector made no progress for {idle:.0f}s (limit probe_stale_s={self.stall_s:g}s): "
            "no batch applied and not caught up"
        )

    async def _connection(self) -> PoolConnectionProxy:
        """The connection the batches are applied on, held from the first batch to the end
        of :meth:`run` (its statements and row types stay prepared, and no batch pays the
        pool's reset); a closed one (PostgreSQL restarted) is replaced."""
        if self._conn is not None and self._conn.is_closed():
            await self._release_connection()
        if self._conn is None:
            conn = await self.rt.pool.acquire()
            try:
                await self.store.prepare(conn)
            except BaseException:
                await self.rt.pool.release(conn)
                raise
            self._conn = conn
        return self._conn

    async def _release_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.rt.pool.release(conn)

    def _publish_soon(self) -> None:
        """Publish in a task of its own (unless one is running), so that nothing waits for
        the outcome topic; a failed publication stops the worker like a failed batch."""
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.create_task(self._publish_in_background())

    async def _publish_in_background(self) -> None:
        try:
            await self._publish_pending()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = exc
            self._failed.set()
            log.error("outcome publication failed, stopping: %s", describe_failure(exc))

    async def _publish_pending(self) -> None:
        async with self._publish_lock:
            if self._pending:
                months, self._pending = self._pending, set()
                self.stats.published += await self.publisher.publish(months)
            if self._release_due():
                # months close with time, not with facts: release the newly closed ones
                self.stats.published += await self.publisher.publish(None)
                self._released_at = time.monotonic()

    def _release_due(self) -> bool:
        return time.monotonic() - self._released_at >= RELEASE_CHECK_INTERVAL

    # ------------------------------------------------------------------ lag

    async def lag(self) -> int:
        """Records between the stored positions and the log end, over every fact
        partition (of every worker in the group, not only this one's)."""
        if time.monotonic() - self._tps_at > 5.0:  # partitions seldom change
            self._tps = await topic_partitions(self.rt.kafka, self.topics)
            self._tps_at = time.monotonic()
        if not self._tps:
            return 0
        behind = lag(await end_offsets(self.rt.kafka, self._tps), await self.store.positions())
        for tp, n in behind.items():
            PROJECTION_LAG.labels(tp.topic, str(tp.partition)).set(n)
        return sum(behind.values())

    # ------------------------------------------------------------------ run

    async def run(
        self, *, until_caught_up: bool = False, stop: asyncio.Event | None = None
    ) -> ProjectorStats:
        """Run the faust app until ``stop`` is set (or, with ``until_caught_up``, until no
        fact partition has a record the read models have not applied). Raises the error
        of a failed batch."""
        await self.rt.migrate_schema("read_models", self.schema)
        if await self.store.reclassify():
            log.info("read models re-derived with vocabularies %s", self.store.cfg.vocabularies.label)
        stop = stop or asyncio.Event()
        (self.settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
        await self.publisher.start()
        try:
            self.stats.published += await self.publisher.publish(None)
            if until_caught_up and await self.lag() == 0:
                return self.stats
            self.app = create_app(self.settings, self.schema, self, self.rt.kafka)
            await asyncio.wait_for(self.app.start(), START_TIMEOUT)
            self._progressed()  # started: the watchdog's bound runs from here
            freeze_startup_heap()  # no full collection traverses the app again (p99 pauses)
            try:
                await self._supervise_watched(stop, until_caught_up)
            finally:
                await self._stop_app()
            if self._publishing is not None:
                if self.failure is not None:  # stopping on a failure: no waiting on an outage
                    self._publishing.cancel()
                await asyncio.gather(self._publishing, return_exceptions=True)
            if self.failure is None and self.app.crash_reason is not None:
                self.failure = self.app.crash_reason
            if self.failure is not None:
                raise self.failure
            await self._publish_pending()
        finally:
            await self._release_connection()
            await self._stop_publisher()
        return self.stats

    async def _stop_publisher(self) -> None:
        """``publisher.stop()`` within :data:`STOP_TIMEOUT`: the producer flushes what it
        holds, which an outage can make wait without end; a publication left unsent is
        re-sent by the next start (every start publishes every month's difference)."""
        try:
            await asyncio.wait_for(self.publisher.stop(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("projector: the outcome producer did not flush within %.0fs; giving up on it",
                      STOP_TIMEOUT)

    async def _check_caught_up(self) -> None:
        """An idle worker that has nothing left to apply is alive: set the progress gauge
        (an outage while checking only leaves the gauge alone; the next batch says more)."""
        try:
            if await self.lag() == 0:
                self._progressed()
        except Exception as exc:  # Kafka or PostgreSQL unavailable: the watchdog decides
            log.info("projector liveness check: %s", describe_failure(exc))

    async def _stop_app(self) -> None:
        """``app.stop()`` within :data:`STOP_TIMEOUT`; past it the worker gives up on faust
        (its state is in PostgreSQL, nothing is lost) and fails, so the process exits."""
        assert self.app is not None
        try:
            await asyncio.wait_for(self.app.stop(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("projector: faust did not stop within %.0fs; giving up on it", STOP_TIMEOUT)
            if self.failure is None:
                self.failure = TimeoutError(f"the faust app did not stop within {STOP_TIMEOUT:.0f}s")
        if self._applier is not None:  # a transaction in flight commits or fails, within the bound
            finished, _ = await asyncio.wait({self._applier}, timeout=STOP_TIMEOUT)
            if not finished:
                self._applier.cancel()
            await asyncio.gather(self._applier, return_exceptions=True)
        await self._release_connection()

    async def _supervise_watched(self, stop: asyncio.Event, until_caught_up: bool) -> None:
        """:meth:`_supervise` under the watchdog (:meth:`_watch`), which ends it even while
        one of its checks waits on an outage."""
        supervise = asyncio.create_task(self._supervise(stop, until_caught_up))
        watchdog = asyncio.create_task(self._watch())
        try:
            await asyncio.wait({supervise, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (supervise, watchdog):
                t.cancel()
            await asyncio.gather(supervise, watchdog, return_exceptions=True)
        if not supervise.cancelled() and supervise.exception() is not None:
            raise supervise.exception()  # type: ignore[misc]

    async def _watch(self) -> None:
        """Return (the worker stops with :class:`ProjectorStalled`) once it made no progress
        for ``stall_s``."""
        while True:
            await asyncio.sleep(WATCHDOG_TICK)
            stalled = self._stalled()
            if stalled is not None:
                if self.failure is None:
                    self.failure = stalled
                log.error("%s: %s", STALL_LOG, stalled)
                return

    async def _supervise(self, stop: asyncio.Event, until_caught_up: bool) -> None:
        assert self.app is not None
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._failed.wait())}
        checked = float("-inf")
        try:
            while True:
                done, _ = await asyncio.wait(waits, timeout=TICK, return_when=asyncio.FIRST_COMPLETED)
                if done or self.app.should_stop:
                    return
                if time.monotonic() - self._busy_at < TICK:
                    continue
                publishing = self._publishing is not None and not self._publishing.done()
                if not publishing and (self._pending or self._release_due()) and await self.lag() == 0:
                    self._publish_soon()  # idle and caught up: bring the outcome topic up to date
                if until_caught_up:
                    if await self.lag() == 0:
                        self._progressed()
                        return
                elif time.monotonic() - checked >= LIVENESS_CHECK:
                    checked = time.monotonic()
                    await self._check_caught_up()
        finally:
            for w in waits:
                w.cancel()


async def project(rt: Runtime, *, schema: str | None = None, until_caught_up: bool = False,
                  stop: asyncio.Event | None = None) -> ProjectorStats:
    """Run one projector worker (the body of ``hub project``)."""
    return await Projector(rt, schema).run(until_caught_up=until_caught_up, stop=stop)
