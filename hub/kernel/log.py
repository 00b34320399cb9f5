"""The event log: the hub's system of record on Kafka, with an exactly-once fact index in
PostgreSQL.

Writing (:meth:`EventLog.append`):

- each envelope goes to its family's fact topic (``<prefix>.facts.<family>``), keyed by
  its partition key, valued by its JSON, with ``ce_id`` / ``ce_type`` headers, the record
  MAC headers (``hub_mac_kid``, ``hub_mac``: :mod:`hub.kernel.recordmac`; consumers tell
  the hub's records from forged ones with them, :mod:`hub.kernel.quarantine`) and the
  Kafka record timestamp set to the envelope's ``recordedat`` (clamped to "now");
- the producer is idempotent with ``acks=all``;
- exactly-once facts (:func:`produce_then_index`): one read finds which of the batch's
  ids ``<core>.event_index`` already holds (duplicates: not produced; a duplicate inside
  one batch is detected as well); the others are produced (one record batch per
  topic-partition) and every acknowledgement is awaited together, with no PostgreSQL
  connection or transaction held; then ONE statement
  indexes the acknowledged records with their position (a binary ``COPY``; ``INSERT … ON
  CONFLICT DO NOTHING`` when another process indexed one of the ids first). An index row
  is written once, only for an acknowledged record, and never updated: 56 bytes per event
  (uuid key, topic and type as small codes of ``<core>.event_index_names``, partition,
  offset; the readable view is ``<core>.indexed_events``). Concurrent appends of one
  process serialize per id (one of them produces it, the others see a duplicate) and
  pipeline otherwise; two processes appending one id at the same moment may both produce
  it, and exactly one indexes it.
  If producing some envelopes fails (refused by ``send``, or no acknowledgement), the
  others are still indexed, the failed ones are simply not, and :class:`AppendError`
  says which. A cancelled append (a timeout, a stopping worker) finishes its index
  statement before the cancellation propagates.

Bounded: the acknowledgements are awaited for ``kafka.append_timeout_s`` at most (brokers
down, too few in-sync replicas: the idempotent producer would retry forever); the
unacknowledged envelopes then fail with :class:`AckTimeout` inside :class:`AppendError`
(transient: the source backs off and retries), they are not indexed, and
``hub_log_broker_available`` drops to 0. Whether such a record reached Kafka is unknown
until the log is read: the retry writes it again, identically, and ``hub verify`` tells
the earlier copy for an orphan copy. PostgreSQL ends any hub session idle in a
transaction for longer than ``postgres.idle_in_transaction_timeout_s``.

Dead letters (:meth:`EventLog.dead_letters`) are written the same way, a batch at a time,
into ``<core>.deadletters`` (the row with the letter and where it went, written after the
acknowledgement); the same partial-failure and cancellation rules apply
(:class:`DeadLetterError`). Both are the one routine :func:`produce_then_index`,
parameterized by a :class:`Ledger` (:data:`EVENTS`, :data:`DEAD_LETTERS`: the index table,
its key and row, the record).

Residual window (narrowed, not closed): from the broker's first acknowledgement of a batch
to the index statement's commit — the remaining acknowledgements of the batch and that one
statement; nothing else is awaited in between. A hard crash of the process or host, a lost
PostgreSQL connection in that window, the event loop being torn down (``asyncio.run``
cancels the producer's own tasks too), or a send that timed out although the broker did
write it, leaves records in Kafka whose ids the index does not hold. The retry (connectors
re-pull; ids are deterministic) writes a second copy, which the index records. ``hub
verify`` reports the first copy as an ``orphan_copy`` — not a break — when it is identical
in every identifying field and precedes the indexed copy (:mod:`hub.kernel.verify`); every
consumer keys by event id, so it sees one fact.

Reading (:meth:`EventLog.read`, :meth:`EventLog.replay`) goes through :mod:`hub.kernel.kafka_io`:
plain consumers without a group (explicit assignment), large ``getmany`` batches, up to the
end offsets seen when reading started; envelopes are upcast to the current version of
their type on read (the log itself is never rewritten).

``replay(as_of=T)`` semantics: an event belongs to the history as of ``T`` when its
envelope's ``recordedat`` (the time the hub recorded the fact, which is also the Kafka
record timestamp written by :meth:`append`) is at or before ``T``. The time the fact
happened in the world (``time``) plays no part: a late-arriving report of an old call is
excluded from an as-of replay before it arrived, which is what "what did we know at T"
means for an auditor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, cast

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, RecordMetadata

from hub.kernel import metrics
from hub.kernel.deadletters import describe_error
from hub.kernel.errors import PermanentError, TransientError, outage_boundary
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from hub.kernel.keys import record_mac_keys
from hub.kernel.recordmac import MacKeys
from hub.kernel.settings import Settings
from schemas.base import EVENT_TYPES, FAMILIES
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope
from schemas.topics import deadletter_topic, fact_topic
from schemas.upcasters import UPCASTERS, upcast

log = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024
# send() errors that concern one record only: the rest of the batch is still produced
RECORD_ERRORS: tuple[type[BaseException], ...] = (MessageSizeTooLargeError, TypeError, ValueError)


class UnknownEventTypeError(PermanentError, ValueError):
    """The envelope's type (after upcasting) is not a registered event type."""


class AppendError(TransientError, RuntimeError):
    """Some envelopes of a batch could not be produced. The rest was appended and committed
    (``result``); the failed ones (``failed``: envelope, error) are not in the index, so
    appending the batch again appends exactly them."""

    def __init__(self, result: AppendResult, failed: list[tuple[Envelope, BaseException]]) -> None:
        kinds = sorted({type(e).__name__ for _, e in failed})
        super().__init__(
            f"{len(failed)} envelope(s) not appended ({', '.join(kinds)}); "
            f"{len(result.appended)} appended, {len(result.duplicates)} duplicate(s)"
        )
        self.result, self.failed = result, failed


class DeadLetterError(TransientError, RuntimeError):
    """Some dead letters of a batch could not be produced. The rest was written and
    committed (``new``: one flag per input letter, as :meth:`EventLog.dead_letters`
    returns, with False for the failed ones); the failed ones (``failed``: letter, error)
    are not in the index, so writing the batch again writes exactly them."""

    def __init__(self, new: list[bool], failed: list[tuple[DeadLetter, BaseException]]) -> None:
        kinds = sorted({type(e).__name__ for _, e in failed})
        super().__init__(f"{len(failed)} dead letter(s) not written ({', '.join(kinds)}); {sum(new)} written")
        self.new, self.failed = new, failed


class CorruptRecordError(PermanentError, ValueError):
    """A record in a fact topic is not a valid envelope (never written by :meth:`append`)."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(f"{topic}[{partition}]@{offset}: not a valid envelope: {reason}")
        self.topic, self.partition, self.offset = topic, partition, offset


@dataclass(frozen=True)
class LoggedEvent:
    """One envelope as stored in the log, upcast to the current version of its type."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    envelope: Envelope

    @property
    def key(self) -> str:
        return self.envelope.partitionkey


@dataclass
class AppendResult:
    """What one :meth:`EventLog.append` did: the new facts with their offsets, and the
    envelopes refused because their id was already in the log (or earlier in the batch)."""

    appended: list[LoggedEvent] = field(default_factory=list)
    duplicates: list[Envelope] = field(default_factory=list)


# --------------------------------------------------------------------------- pure helpers


def family_of(envelope: Envelope) -> str:
    """The fact family an envelope belongs to (after upcasting its type)."""
    if envelope.type not in UPCASTERS:  # a current type: no upcast to run (every appended fact)
        cls = EVENT_TYPES.get(envelope.type)
        if cls is not None:
            return cls.family
    current_type, _ = upcast(envelope.type, envelope.data)
    cls = EVENT_TYPES.get(current_type)
    if cls is None:
        raise UnknownEventTypeError(f"event {envelope.id}: unknown event type {envelope.type!r}")
    return cls.family


def topic_for(prefix: str, envelope: Envelope) -> str:
    return fact_topic(prefix, family_of(envelope))


class Identified(Protocol):
    """What the log writes once each: anything with an ``id`` (envelopes, dead letters)."""

    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=Identified)


def split_batch_duplicates(items: Iterable[Item]) -> tuple[list[Item], list[Item]]:
    """(first occurrence of each id in order, later occurrences in order)."""
    seen: set[str] = set()
    unique: list[Item] = []
    repeats: list[Item] = []
    for item in items:
        if item.id in seen:
            repeats.append(item)
        else:
            seen.add(item.id)
            unique.append(item)
    return unique, repeats


def record_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    return [("ce_id", envelope.id.encode()), ("ce_type", envelope.type.encode())]


def timestamp_ms(envelope: Envelope, now: datetime) -> int:
    """Kafka record timestamp: ``recordedat``, never later than ``now`` (brokers refuse
    timestamps too far in the future)."""
    return int(min(envelope.recordedat, now).timestamp() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def decode_record(record: ConsumerRecord) -> LoggedEvent:
    """A fact record as a :class:`LoggedEvent` with its envelope upcast to the current type."""
    try:
        envelope = Envelope.model_validate_json(record.value).current()
    except Exception as exc:  # pydantic ValidationError, ValueError from upcasters, None value
        reason = describe_error(exc, 300)  # names fields and rules, never the record's values
        raise CorruptRecordError(record.topic, record.partition, record.offset, reason) from exc
    return LoggedEvent(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=ms_to_datetime(record.timestamp),
        envelope=envelope,
    )


def family_topics(prefix: str, families: Iterable[str] | None = None) -> list[str]:
    fams = list(FAMILIES if families is None else families)
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown event families: {', '.join(unknown)}")
    return [fact_topic(prefix, f) for f in fams]


async def _outlast_cancellation(task: asyncio.Future) -> None:
    """Wait for ``task`` to finish although the waiting task is being cancelled (again and
    again): an append's (or a dead-letter batch's) transaction must commit the offsets of
    what the broker acknowledged rather than be abandoned between the acknowledgement and
    the commit."""
    while not task.done():
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("log write: cancelled, and its transaction failed: %s", type(task.exception()).__name__)


T = TypeVar("T")


class AckTimeout(TransientError, TimeoutError):
    """The broker did not acknowledge a record within ``kafka.append_timeout_s`` (brokers
    down, or fewer in-sync replicas than ``min.insync.replicas``)."""


class _Batch:
    """One record batch of :func:`_produce_all` for one topic-partition: the builder, the
    items in it with their place in the batch (the builder's record metadata: relative
    offset, timestamp) and their input position, and the future of its acknowledgement
    once submitted."""

    __slots__ = ("builder", "failed", "future", "members", "tp")

    def __init__(self, builder: Any, tp: TopicPartition) -> None:
        self.builder, self.tp = builder, tp
        self.members: list[tuple[int, Any, Any]] = []
        self.future: asyncio.Future | None = None
        self.failed = False  # its items are in the failed list (never submitted)


class _Batcher:
    """Places records into per-partition record batches the way ``send`` would: the same
    partition (the producer's own partitioner over the same partition lists ``send``
    reads), the same per-record refusals (a record over ``max_request_size`` is
    :class:`MessageSizeTooLargeError`; a key, value or timestamp of the wrong type a
    ``TypeError``), a new batch when one is full. Pure but for :meth:`load` (metadata)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitions: dict[str, tuple[list[int], list[int]]] = {}
        self.open: dict[TopicPartition, _Batch] = {}
        self.batches: list[_Batch] = []
        self.placed: dict[tuple[str, bytes], TopicPartition] = {}  # the events of a row share a key
        self.max_request = int(getattr(producer, "_max_request_size", 1048576))

    async def load(self, topic: str) -> None:
        """The topic's partitions (waits for its metadata, as ``send`` does)."""
        await self.producer.partitions_for(topic)
        metadata = self.producer._metadata  # what send() reads the partitions from
        self.partitions[topic] = (
            list(metadata.partitions_for_topic(topic)), list(metadata.available_partitions_for_topic(topic))
        )

    def add(self, index: int, item: Any, topic: str, value: bytes | None, key: bytes | None,
            headers: Sequence[tuple[str, bytes]], timestamp_ms: int | None = None) -> None:
        if not (value is None or type(value) is bytes) or not (key is None or type(key) is bytes):
            raise TypeError("a record's key and value must be bytes")
        if DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers) > self.max_request:
            raise MessageSizeTooLargeError("the record is larger than the producer's max_request_size")
        tp = self.placed.get((topic, key)) if key is not None else None
        if tp is None:  # a key's partition is a function of the key (a keyless one is not: random)
            every, available = self.partitions[topic]
            tp = TopicPartition(topic, self.producer._partitioner(key, every, available))
            if key is not None:
                self.placed[(topic, key)] = tp
        batch = self.open.get(tp)
        meta = None if batch is None else batch.builder.append(
            timestamp=timestamp_ms, key=key, value=value, headers=headers
        )
        if batch is None or meta is None:  # no batch yet, or it is full: a new one takes it
            batch = self.open[tp] = _Batch(self.producer.create_batch(), tp)
            self.batches.append(batch)
            meta = batch.builder.append(timestamp=timestamp_ms, key=key, value=value, headers=headers)
        batch.members.append((index, item, meta))


def _record_metadata(batch: RecordMetadata, meta: Any) -> RecordMetadata:
    """One record's metadata from its batch's acknowledgement (what aiokafka's per-record
    futures hold): base offset + relative offset; the broker's timestamp, or the record's
    own when the broker kept the create time (-1)."""
    timestamp = batch.timestamp if batch.timestamp != -1 else meta.timestamp
    return RecordMetadata(batch.topic, batch.partition, batch.topic_partition, batch.offset + meta.offset,
                          timestamp, batch.timestamp_type, batch.log_start_offset)


async def _produce_all(
    producer: AIOKafkaProducer, items: Sequence[T], record: Callable[[T], dict[str, Any]], timeout: float
) -> tuple[list[tuple[T, RecordMetadata]], list[tuple[T, BaseException]]]:
    """Send one record per item (``record(item)`` = the ``send`` keyword arguments: topic,
    value, key, headers, optionally timestamp_ms) and await every acknowledgement together,
    for ``timeout`` seconds at most. Returns (acknowledged items with their record
    metadata, in input order; failed items with their error). A refusal that concerns one
    record (:data:`RECORD_ERRORS`: too large, not bytes) fails that item only; any other
    error means the producer is failing, so nothing more is sent and the rest fail with it.
    An item not acknowledged in time fails with :class:`AckTimeout`; its record is NOT
    withdrawn (nothing can withdraw it): the producer may still deliver it later, ahead of
    any retry on its partition, which is then an identical copy (every producer's retry is
    byte-identical) that ``hub verify`` reports as an orphan copy.

    The records go out through aiokafka's batch API (``create_batch`` / ``send_batch``, one
    record batch per topic-partition, placed by :class:`_Batcher` on the partition ``send``
    would choose), with the producer's idempotent sequence numbers and ``acks``: a third
    of ``send``'s CPU per record and one future per batch instead of one per record."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    batcher = _Batcher(producer)
    failed: list[tuple[T, BaseException]] = []
    failing: BaseException | None = None
    done = 0
    try:  # metadata and a free batch slot are waited for: bounded by the same deadline, as a whole
        async with asyncio.timeout_at(deadline):
            for index, item in enumerate(items):
                if failing is not None:
                    failed.append((item, failing))  # the producer is failing: do not send more
                else:
                    try:
                        kwargs = record(item)
                        if kwargs["topic"] not in batcher.partitions:
                            await batcher.load(kwargs["topic"])
                        batcher.add(index, item, **kwargs)
                    except Exception as exc:  # refused before reaching the broker (size, type, metadata)
                        failed.append((item, exc))
                        if not isinstance(exc, RECORD_ERRORS):
                            failing = exc
                done += 1
            for batch in batcher.batches:
                if failing is None:
                    batch.builder.close()  # complete: sent at once, no per-record send joins it
                    try:
                        batch.future = await producer.send_batch(
                            batch.builder, batch.tp.topic, partition=batch.tp.partition
                        )
                        continue
                    except Exception as exc:  # the producer is failing (closed, fenced)
                        failing = exc
                batch.failed = True
                failed.extend((item, failing) for _, item, _ in batch.members)
    except TimeoutError:
        late = AckTimeout(f"no broker accepted the record within {timeout:g}s")
        failed.extend((item, late) for item in items[done:])
        for batch in batcher.batches:
            if batch.future is None and not batch.failed:
                failed.extend((item, late) for _, item, _ in batch.members)
    submitted = [b for b in batcher.batches if b.future is not None]
    if submitted:
        await asyncio.wait([b.future for b in submitted if b.future is not None],
                           timeout=max(0.0, deadline - loop.time()))
    acked: list[tuple[int, T, RecordMetadata]] = []
    for batch in submitted:
        fut = batch.future
        assert fut is not None
        if not fut.done():
            fut.add_done_callback(_consume_late)
            late = AckTimeout(f"no acknowledgement within {timeout:g}s")
            failed.extend((item, late) for _, item, _ in batch.members)
        elif fut.cancelled():
            failed.extend((item, asyncio.CancelledError()) for _, item, _ in batch.members)
        elif fut.exception() is not None:
            error = cast(BaseException, fut.exception())
            failed.extend((item, error) for _, item, _ in batch.members)
        else:
            base = fut.result()
            acked.extend((index, item, _record_metadata(base, meta)) for index, item, meta in batch.members)
    acked.sort(key=lambda entry: entry[0])
    if submitted or any(isinstance(e, AckTimeout) for _, e in failed):
        metrics.LOG_BROKER_AVAILABLE.set(0 if any(isinstance(e, AckTimeout) for _, e in failed) else 1)
    return [(item, meta) for _, item, meta in acked], failed


def _consume_late(fut: asyncio.Future) -> None:
    """Retrieve a late acknowledgement's outcome (no "exception never retrieved" noise)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.info("a timed-out record finally failed: %s", type(fut.exception()).__name__)


def event_key(event_id: str) -> uuid.UUID:
    """The event index's key of an event id: the id itself when it is a canonical uuid (every
    id :func:`schemas.envelope.deterministic_id` makes), else a uuid derived from it
    (SHA-256 over ``"hub event id" 0x1f id``, first 16 bytes, version 8 / RFC variant bits;
    migration 0004 derives the same in SQL). Pure and stable."""
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == event_id:
        return parsed
    digest = bytearray(hashlib.sha256(b"hub event id\x1f" + event_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


class NameCodes:
    """The small integer codes the event index stores instead of topic and event-type names
    (``<core>.event_index_names``), cached for the process: a name's code never changes."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.codes: dict[str, int] = {}

    async def ensure(self, conn: Any, names: Iterable[str]) -> None:
        """Look up (creating when new) the codes of ``names`` not cached yet: one round trip
        when some are missing, none otherwise."""
        missing = sorted({n for n in names if n not in self.codes})
        if not missing:
            return
        rows = await conn.fetch(
            f"""WITH new AS (
                    INSERT INTO {self.schema}.event_index_names (name) SELECT unnest($1::text[])
                    ON CONFLICT (name) DO NOTHING RETURNING code, name)
                SELECT code, name FROM new
                UNION ALL
                SELECT code, name FROM {self.schema}.event_index_names WHERE name = any($1::text[])""",
            missing,
        )
        self.codes.update({r["name"]: r["code"] for r in rows})


@dataclass(frozen=True)
class Ledger(Generic[Item]):
    """What one kind of exactly-once write indexes in PostgreSQL and sends to Kafka: the
    index ``table`` keyed by ``key_column`` (``key(item)``, of PostgreSQL type
    ``key_type``), the columns of an index row (name, PostgreSQL type) and the row of an
    acknowledged item (item, topic, where the broker put it, the name codes), the names the
    rows need codes for, and the ``send`` keyword arguments of an item's record (item,
    topic, the clock read before producing)."""

    what: str  # warnings name the write ("append") and its items ("envelope(s)")
    noun: str
    table: str
    key_column: str
    key_type: str
    key: Callable[[Item], Any]
    columns: tuple[tuple[str, str], ...]
    row: Callable[[Item, Any, str, RecordMetadata, Mapping[str, int]], tuple[Any, ...]]
    names: Callable[[Item, str], Iterable[str]]
    record: Callable[[Item, str, datetime], dict[str, Any]]
    #: the sort key of an index key (rows are indexed in key order): ``key`` itself, or a
    #: cheaper value of the same order (a uuid's integer)
    order: Callable[[Any], Any] = lambda key: key
    #: index by binary COPY (about half the cost of the INSERT), falling back to the
    #: ``INSERT … ON CONFLICT`` only when another writer indexed one of the ids first
    copy: bool = False

    def present_sql(self, schema: str) -> str:
        return (
            f"SELECT {self.key_column} AS k FROM {schema}.{self.table}"
            f" WHERE {self.key_column} = any($1::{self.key_type}[])"
        )

    def index_sql(self, schema: str) -> str:
        """The ``INSERT`` of index rows; returns the keys it inserted (``fresh``). For events
        (``copy``) a key another writer indexed first, whose copy lies EARLIER in the same
        partition than ours, is moved to our later copy: of two processes that produced one
        id at the same moment, the index always names the last copy, so the earlier one is
        an orphan copy to ``hub verify`` (a copy after the indexed one would read as forged)."""
        names = ", ".join(name for name, _ in self.columns)
        arrays = ", ".join(f"${i}::{pg_type}[]" for i, (_, pg_type) in enumerate(self.columns, 1))
        t = f"{schema}.{self.table}"
        on_conflict = (
            'DO UPDATE SET "offset" = EXCLUDED."offset"'
            f' WHERE {t}."partition" = EXCLUDED."partition" AND {t}."offset" < EXCLUDED."offset"'
            if self.copy else "DO NOTHING"
        )
        return (
            f"INSERT INTO {t} ({names}) SELECT * FROM unnest({arrays})"
            f" ON CONFLICT ({self.key_column}) {on_conflict}"
            f" RETURNING {self.key_column} AS k, (xmax = 0) AS fresh"
        )

    def window_marker(self, schema: str) -> bytes:
        """The start of the first statement sent after the acknowledgements (fault tests cut
        the PostgreSQL connection when they see it)."""
        if self.copy:
            return f'COPY "{schema}"."{self.table}"'.encode()
        return self.index_sql(schema).encode()

    async def index(self, conn: Any, schema: str, rows: Sequence[tuple[Any, ...]]) -> set[Any]:
        """Index ``rows`` (in key order); returns the keys this call indexed (a key another
        writer indexed first is left out)."""
        if self.copy:
            try:
                await conn.copy_records_to_table(
                    self.table, schema_name=schema, records=rows,
                    columns=[name.strip('"') for name, _ in self.columns],
                )
                return {r[0] for r in rows}
            except asyncpg.UniqueViolationError:
                pass  # a concurrent writer indexed some of them: the INSERT skips exactly those
        columns = [list(col) for col in zip(*rows, strict=True)]
        return {r["k"] for r in await conn.fetch(self.index_sql(schema), *columns) if r["fresh"]}


@dataclass
class Written(Generic[Item]):
    """What one produce-then-index write did: the acknowledged and indexed items with their
    record metadata (input order), the items whose id was already indexed, the failed items
    with their error."""

    acked: list[tuple[Item, RecordMetadata]] = field(default_factory=list)
    refused: list[Item] = field(default_factory=list)
    failed: list[tuple[Item, BaseException]] = field(default_factory=list)


def _signed(keys: MacKeys, record: dict[str, Any]) -> dict[str, Any]:
    """``send`` keyword arguments with the record MAC headers added (every record the log
    writes, facts and dead letters, is MACed)."""
    headers = keys.sign(record["topic"], record["key"], record["value"], record["headers"])
    return {**record, "headers": headers}


async def produce_then_index(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    schema: str,
    ledger: Ledger[Item],
    unique: Sequence[Item],
    topics: Mapping[str, str],
    mac_keys: MacKeys,
    timeout: float = 30.0,
    codes: NameCodes | None = None,
) -> Written[Item]:
    """Write ``unique`` (distinct ids, each headed for ``topics[id]``) exactly once: the one
    write routine of the log, for events and dead letters alike.

    1. One read: which keys ``ledger.table`` already holds (those items are refused).
    2. Produce the others and await every acknowledgement together, for ``timeout`` seconds
       at most (``kafka.append_timeout_s``); no PostgreSQL connection or transaction is held
       meanwhile, so appends pipeline and a broker outage never leaves a session idle in a
       transaction.
    3. One statement indexes the acknowledged items WITH their position, in key order
       (:meth:`Ledger.index`: a binary ``COPY`` for events; ``INSERT … ON CONFLICT DO
       NOTHING`` for dead letters, and for events when a concurrent writer indexed one of
       the ids first): an index row is only ever written for a record the broker
       acknowledged, and updated only to name the later of two copies that two processes
       produced at the same moment (:meth:`Ledger.index_sql`).

    Invariants: the index holds exactly the acknowledged records' keys (a failed or
    timed-out item is simply not indexed: appending it again produces it again). Between an
    acknowledgement and the index commit nothing else is awaited than the other
    acknowledgements and that one statement; a crash, a lost PostgreSQL connection or a late
    delivery after :class:`AckTimeout` there leaves an unindexed copy, which every retry
    reproduces byte-identically and ``hub verify`` reports as an orphan copy. Within one
    process concurrent writers of one id are serialized by :class:`EventLog`; two processes
    writing one id at the same moment may both produce it; exactly one reports it appended (the
    other a duplicate) and the index names the later copy, so ``hub verify`` sees the earlier
    one as an orphan copy. Callers run this as a task that a cancellation waits for
    (:func:`_outlast_cancellation`)."""
    keys = {item.id: ledger.key(item) for item in unique}
    async with pool.acquire() as conn:
        present = {r["k"] for r in await conn.fetch(ledger.present_sql(schema), list(keys.values()))}
        fresh = [item for item in unique if keys[item.id] not in present]
        refused = [item for item in unique if keys[item.id] in present]
        if fresh and codes is not None:
            await codes.ensure(conn, (n for item in fresh for n in ledger.names(item, topics[item.id])))
    if not fresh:
        return Written(refused=refused)
    now = datetime.now(UTC)
    acked, failed = await _produce_all(
        producer,
        fresh,
        lambda item: _signed(mac_keys, ledger.record(item, topics[item.id], now)),
        timeout,
    )
    if acked:
        known = codes.codes if codes is not None else {}
        rows = sorted(
            (ledger.row(item, keys[item.id], topics[item.id], meta, known) for item, meta in acked),
            key=lambda r: ledger.order(r[0]),
        )
        async with pool.acquire() as conn:
            indexed = await ledger.index(conn, schema, rows)
        raced = [item for item, _ in acked if keys[item.id] not in indexed]
        if raced:  # another process indexed these ids first: one of the identical copies is an orphan
            log.warning("%s: %d %s indexed first by a concurrent writer; counted as duplicates",
                        ledger.what, len(raced), ledger.noun)
            acked = [(item, meta) for item, meta in acked if keys[item.id] in indexed]
            refused += raced
    if failed:
        log.warning("%s: %d of %d %s not produced (%s); their ids stay free for a retry",
                    ledger.what, len(failed), len(fresh), ledger.noun, type(failed[0][1]).__name__)
    return Written(acked, refused, failed)


EVENTS: Ledger[Envelope] = Ledger(
    what="append",
    noun="envelope(s)",
    table="event_index",
    key_column="event_id",
    key_type="uuid",
    key=lambda env: event_key(env.id),
    columns=(
        ("event_id", "uuid"),
        ("topic", "int2"),
        ("event_type", "int2"),
        ('"partition"', "int4"),
        ('"offset"', "int8"),
    ),
    row=lambda env, key, topic, meta, codes: (
        key, codes[topic], codes[env.type], meta.partition, meta.offset
    ),
    names=lambda env, topic: (topic, env.type),
    record=lambda env, topic, now: {
        "topic": topic,
        "value": env.to_bytes(),
        "key": env.partitionkey.encode(),
        "headers": record_headers(env),
        "timestamp_ms": timestamp_ms(env, now),
    },
    order=lambda key: key.int,
    copy=True,
)

DEAD_LETTERS: Ledger[DeadLetter] = Ledger(
    what="dead letters",
    noun="letter(s)",
    table="deadletters",
    key_column="id",
    key_type="text",
    key=lambda dl: dl.id,
    columns=(
        ("id", "text"),
        ("source", "text"),
        ("source_family", "text"),
        ("profile", "text"),
        ("record_ref", "text"),
        ("stage", "text"),
        ("reason", "text"),
        ("at", "timestamptz"),
        ("record", "jsonb"),
        ("topic", "text"),
        ('"partition"', "int4"),
        ('"offset"', "int8"),
    ),
    row=lambda dl, _key, topic, meta, _codes: (
        dl.id, dl.source, dl.source_family, dl.profile, dl.record_ref, dl.stage, dl.reason, dl.at,
        dl.model_dump_json(), meta.topic, meta.partition, meta.offset,
    ),
    names=lambda dl, topic: (),
    record=lambda dl, topic, _: {
        "topic": topic,
        "value": dl.model_dump_json().encode(),
        "key": dl.id.encode(),
        "headers": [("dl_source", dl.source.encode()), ("dl_stage", dl.stage.encode())],
    },
)


# --------------------------------------------------------------------------- the log


@outage_boundary("event log")
class EventLog:
    """Append to and read from the fact topics. Explicit lifecycle: ``await start()`` before
    use, ``await stop()`` after. One instance per process is enough (it is safe for
    concurrent tasks). A Kafka or PostgreSQL outage while starting, appending or writing
    dead letters raises :class:`hub.kernel.errors.ServiceUnavailable`."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, clients: KafkaClients, mac_keys: MacKeys | None = None
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.clients = clients
        self.mac_keys = mac_keys or record_mac_keys(settings)  # raises before any I/O
        self.prefix = settings.kafka.topic_prefix
        self.schema = settings.core_schema
        self._producer: AIOKafkaProducer | None = None
        self._codes = NameCodes(self.schema)
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}

    # -- lifecycle

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = self.clients.producer(
            "log",
            max_batch_size=PRODUCER_BATCH_BYTES,
            linger_ms=5,
            compression_type=None,
            request_timeout_ms=30000,
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("EventLog is not started (await log.start())")
        return self._producer

    # -- writing

    async def append(self, envelopes: Sequence[Envelope]) -> AppendResult:
        """Append a batch of facts exactly once (see the module docstring). The returned
        ``appended`` list keeps the input order; ``duplicates`` holds every refused envelope.

        Raises :class:`AppendError` (after committing the part that the broker acknowledged)
        when some envelopes could not be produced. Cancelling an append waits until its
        transaction has committed or rolled back, then raises ``CancelledError``."""
        if not envelopes:
            return AppendResult()
        unique, repeats = split_batch_duplicates(envelopes)
        topics = {env.id: topic_for(self.prefix, env) for env in unique}  # raises before any I/O
        written = await self._write_once(EVENTS, unique, topics)
        # the records of a batch share a few timestamps: each converted once
        times = {ms: ms_to_datetime(ms) for ms in {meta.timestamp for _, meta in written.acked}}
        appended = [
            LoggedEvent(meta.topic, meta.partition, meta.offset, times[meta.timestamp], env)
            for env, meta in written.acked
        ]
        result = AppendResult(appended, written.refused + repeats)
        if written.failed:
            raise AppendError(result, written.failed)
        return result

    async def dead_letters(self, dls: Sequence[DeadLetter]) -> list[bool]:
        """Record dead letters once each (deduplicated by ``id``): indexed in
        ``<core>.deadletters`` with status ``open`` and written to their source family's
        dead-letter topic. Returns one flag per input letter, True when it was new (a
        letter already stored, or a repeat of an earlier letter of the batch, is False).

        The same write as :meth:`append` (:func:`produce_then_index`). Raises
        :class:`DeadLetterError` (after committing what the broker acknowledged, with the
        failed ids released for a retry) when some letters could not be produced.
        Cancelling waits until the transaction has finished."""
        if not dls:
            return []
        unique, _ = split_batch_duplicates(dls)
        topics = {dl.id: deadletter_topic(self.prefix, dl.source_family) for dl in unique}
        written = await self._write_once(DEAD_LETTERS, unique, topics)
        new = {dl.id for dl, _ in written.acked}
        flags: list[bool] = []
        for dl in dls:
            flags.append(dl.id in new)
            new.discard(dl.id)  # a repeat inside the batch is not new
        if written.failed:
            raise DeadLetterError(flags, written.failed)
        return flags

    async def _write_once(
        self, ledger: Ledger[Item], unique: list[Item], topics: dict[str, str]
    ) -> Written[Item]:
        """:func:`produce_then_index` as a task that a cancellation of the caller waits for
        (then re-raises): what the broker acknowledged is indexed, never abandoned between
        the acknowledgement and the index statement.

        Concurrent writes of this log serialize per id: a write whose items include an id
        another write of this process has in flight waits for that write first (its
        read then sees the id indexed, or free again after a failure), so one process never
        produces an id twice. Writes of distinct ids run concurrently (pipelined appends)."""
        loop = asyncio.get_running_loop()
        while True:
            busy = {self._inflight[(ledger.table, item.id)] for item in unique
                    if (ledger.table, item.id) in self._inflight}
            if not busy:
                break
            await asyncio.wait(busy)
        done: asyncio.Future[None] = loop.create_future()
        for item in unique:  # registered without an await since the check above
            self._inflight[(ledger.table, item.id)] = done
        codes = self._codes if ledger is EVENTS else None
        body = asyncio.ensure_future(
            produce_then_index(self.pool, self.producer, self.schema, ledger, unique, topics, self.mac_keys,
                               self.settings.kafka.append_timeout_s, codes)
        )
        body.add_done_callback(lambda _: self._release(ledger, unique, done))
        try:
            return await asyncio.shield(body)
        except asyncio.CancelledError:
            await _outlast_cancellation(body)
            raise

    def _release(self, ledger: Ledger[Item], unique: list[Item], done: asyncio.Future[None]) -> None:
        for item in unique:
            if self._inflight.get((ledger.table, item.id)) is done:
                del self._inflight[(ledger.table, item.id)]
        done.set_result(None)

    # -- reading

    async def read(
        self,
        topics: Sequence[str] | None = None,
        *,
        from_offsets: Mapping[TopicPartition | tuple[str, int], int] | None = None,
        from_time: datetime | None = None,
    ) -> AsyncIterator[LoggedEvent]:
        """Events of ``topics`` (default: every fact topic), per partition in offset order,
        up to the end offsets seen when reading started.

        Start: ``from_offsets`` (partitions not named start at their beginning), else the
        first record whose timestamp is at or after ``from_time``, else the beginning."""
        async for record in scan_records(
            self.clients,
            list(topics) if topics is not None else family_topics(self.prefix),
            role="reader",
            from_offsets=from_offsets,
            from_time=from_time,
        ):
            yield decode_record(record)

    async def replay(
        self, *, as_of: datetime | None = None, families: Iterable[str] | None = None
    ) -> AsyncIterator[LoggedEvent]:
        """The whole history of ``families`` (default: all) up to the current end, in order
        per key (per partition, by offset) and merged across partitions by record time.
        With ``as_of``, events whose ``recordedat`` is later than ``as_of`` are left out."""
        if as_of is not None and as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        async for record in scan_records(
            self.clients,
            family_topics(self.prefix, families),
            role="reader",
            merge=True,
        ):
            event = decode_record(record)
            if as_of is not None and event.envelope.recordedat > as_of:
                continue
            yield event

