"""The event log: the hub's system of record on Kafka, with an exactly-once fact index in
PostgreSQL.

Writing (:meth:`EventLog.append`):

- each envelope goes to its family's fact topic (``<prefix>.facts.<family>``), keyed by
  its partition key, valued by its JSON, with ``ce_id`` / ``ce_type`` headers, the record
  MAC headers (``hub_mac_kid``, ``hub_mac``: :mod:`hub.kernel.recordmac`; consumers tell
  the hub's records from forged ones with them, :mod:`hub.kernel.quarantine`) and the
  Kafka record timestamp set to the envelope's ``recordedat`` (clamped to "now");
- the producer is idempotent with ``acks=all``;
- exactly-once facts: inside one PostgreSQL transaction the batch's event ids are claimed
  in ``<core>.event_index`` (``INSERT … ON CONFLICT DO NOTHING RETURNING``), only the
  newly claimed envelopes are produced, every acknowledgement is awaited, the
  topic/partition/offset of each is recorded, and the transaction commits. An id already
  claimed (by an earlier append, or by a concurrent appender that committed first) is a
  duplicate and is not produced; a duplicate inside one batch is detected as well. Two
  concurrent appenders of one id serialize on the index row: exactly one produces it.
  If producing some envelopes fails (refused by ``send``, or no acknowledgement), the
  others are still recorded and committed, the failed ids are released for a retry, and
  :class:`AppendError` says which; a batch is never rolled back wholesale after the broker
  acknowledged part of it (that would orphan the acknowledged records). A cancelled append
  (a timeout, a stopping worker) finishes its transaction before the cancellation
  propagates, for the same reason.

Bounded: the acknowledgements are awaited for ``kafka.append_timeout_s`` at most (brokers
down, too few in-sync replicas: the idempotent producer would retry forever); the
unacknowledged envelopes then fail with :class:`AckTimeout` inside :class:`AppendError`
(transient: the source backs off and retries), their claims are released, the transaction
ends, and ``hub_log_broker_available`` drops to 0. PostgreSQL ends any hub session idle in a
transaction for longer than ``postgres.idle_in_transaction_timeout_s``.

Dead letters (:meth:`EventLog.dead_letters`) are written the same way, a batch at a time:
one transaction claims their ids in ``<core>.deadletters``, produces the new ones to their
family's dead-letter topic, awaits every acknowledgement together and records where each
went; the same partial-failure and cancellation rules apply (:class:`DeadLetterError`).
Both are the one routine :func:`claim_then_produce`, parameterized by a :class:`Ledger`
(:data:`EVENTS`, :data:`DEAD_LETTERS`: the index table and its claim columns, the record).

Residual window (narrowed, not closed): from the broker's first acknowledgement of a batch
to PostgreSQL's commit — the remaining acknowledgements of the batch, one ``UPDATE`` of the
offsets and the ``COMMIT`` (plus a ``DELETE`` when some envelopes failed); nothing else is
awaited in between. A hard crash of the process or host, a lost PostgreSQL connection in
that window, the event loop being torn down (``asyncio.run`` cancels the producer's own
tasks too), or a send that timed out although the broker did write it, leaves records in
Kafka whose ids the index does not hold. The retry (connectors re-pull; ids are
deterministic) claims the id again and writes a second copy, which the index records.
``hub verify`` reports the first copy as an ``orphan_copy`` — not a break — when it is
identical in every identifying field and precedes the indexed copy
(:mod:`hub.kernel.verify`); every consumer keys by event id, so it sees one fact.

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
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, cast

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
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
from schemas.upcasters import upcast

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


async def _produce_all(
    producer: AIOKafkaProducer, items: Sequence[T], record: Callable[[T], dict[str, Any]], timeout: float
) -> tuple[list[tuple[T, RecordMetadata]], list[tuple[T, BaseException]]]:
    """Send one record per item (``record(item)`` = the ``send`` keyword arguments) and
    await every acknowledgement together, for ``timeout`` seconds at most. Returns
    (acknowledged items with their record metadata, in input order; failed items with their
    error). A ``send`` refusal that concerns one record (:data:`RECORD_ERRORS`) fails that
    item only; any other error means the producer is failing, so nothing more is sent and
    the rest fail with it. An item not acknowledged in time fails with :class:`AckTimeout`;
    its record is NOT withdrawn (nothing can withdraw it): the producer may still deliver it
    later, ahead of any retry on its partition, which is then an identical copy (every
    producer's retry is byte-identical) that ``hub verify`` reports as an orphan copy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sent: list[tuple[T, asyncio.Future]] = []
    failed: list[tuple[T, BaseException]] = []
    for item in items:
        if failed and not isinstance(failed[-1][1], RECORD_ERRORS):
            failed.append((item, failed[-1][1]))  # the producer is failing: do not send more
            continue
        try:  # send() waits for metadata / buffer space: bounded by the same deadline
            sent.append((item, await asyncio.wait_for(producer.send(**record(item)), deadline - loop.time())))
        except TimeoutError:
            failed.append((item, AckTimeout(f"no broker accepted the record within {timeout:g}s")))
        except Exception as exc:  # refused before reaching the broker (size, metadata, closed)
            failed.append((item, exc))
    futures = [f for _, f in sent]
    if futures:
        await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
    acked: list[tuple[T, RecordMetadata]] = []
    for item, fut in sent:
        if not fut.done():
            fut.add_done_callback(_consume_late)
            failed.append((item, AckTimeout(f"no acknowledgement within {timeout:g}s")))
        elif fut.cancelled():
            failed.append((item, asyncio.CancelledError()))
        elif fut.exception() is not None:
            failed.append((item, cast(BaseException, fut.exception())))
        else:
            acked.append((item, fut.result()))
    if sent or any(isinstance(e, AckTimeout) for _, e in failed):
        metrics.LOG_BROKER_AVAILABLE.set(0 if any(isinstance(e, AckTimeout) for _, e in failed) else 1)
    return acked, failed


def _consume_late(fut: asyncio.Future) -> None:
    """Retrieve a late acknowledgement's outcome (no "exception never retrieved" noise)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.info("a timed-out record finally failed: %s", type(fut.exception()).__name__)


@dataclass(frozen=True)
class Ledger(Generic[Item]):
    """What one kind of exactly-once write claims in PostgreSQL and sends to Kafka: the
    index ``table`` (its primary key ``id_column``; ``topic``, ``partition`` and
    ``offset`` columns for where each record went), the columns of a claim (name,
    PostgreSQL type, value of an item headed for a topic) and the ``send`` keyword
    arguments of an item's record (item, topic, the clock read after the claim)."""

    what: str  # warnings name the write ("append") and its items ("envelope(s)")
    noun: str
    table: str
    id_column: str
    columns: tuple[tuple[str, str, Callable[[Item, str], Any]], ...]
    record: Callable[[Item, str, datetime], dict[str, Any]]

    def claim_sql(self, schema: str) -> str:
        names = ", ".join(name for name, _, _ in self.columns)
        arrays = ", ".join(f"${i}::{pg_type}[]" for i, (_, pg_type, _) in enumerate(self.columns, 1))
        return (
            f"INSERT INTO {schema}.{self.table} ({names}) SELECT * FROM unnest({arrays})"
            f" ON CONFLICT ({self.id_column}) DO NOTHING RETURNING {self.id_column}"
        )

    def record_sql(self, schema: str) -> str:
        return (
            f'UPDATE {schema}.{self.table} AS d SET topic = u.t, "partition" = u.p, "offset" = u.o'
            " FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS u(id, t, p, o)"
            f" WHERE d.{self.id_column} = u.id"
        )

    def release_sql(self, schema: str) -> str:
        return f"DELETE FROM {schema}.{self.table} WHERE {self.id_column} = any($1::text[])"


@dataclass
class Written(Generic[Item]):
    """What one claim-then-produce transaction did: the acknowledged items with their record
    metadata (input order), the items whose id was already claimed, the failed items with
    their error."""

    acked: list[tuple[Item, RecordMetadata]] = field(default_factory=list)
    refused: list[Item] = field(default_factory=list)
    failed: list[tuple[Item, BaseException]] = field(default_factory=list)


def _signed(keys: MacKeys, record: dict[str, Any]) -> dict[str, Any]:
    """``send`` keyword arguments with the record MAC headers added (every record the log
    writes, facts and dead letters, is MACed)."""
    headers = keys.sign(record["topic"], record["key"], record["value"], record["headers"])
    return {**record, "headers": headers}


async def claim_then_produce(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    schema: str,
    ledger: Ledger[Item],
    unique: Sequence[Item],
    topics: Mapping[str, str],
    mac_keys: MacKeys,
    timeout: float = 30.0,
) -> Written[Item]:
    """Write ``unique`` (distinct ids, each headed for ``topics[id]``) exactly once: the one
    claim-then-produce transaction of the log, for events and dead letters alike.

    In ONE PostgreSQL transaction: claim the ids in ``ledger.table`` (``INSERT … ON
    CONFLICT DO NOTHING RETURNING``, in id order, so concurrent writers never deadlock; an
    id claimed by another writer is refused, and a concurrent writer of one id waits on its
    row, so exactly one produces it); produce the newly claimed items only; await every
    acknowledgement together; record the topic/partition/offset of the delivered ones;
    release the claims of the failed ones (their ids stay free for a retry); commit.

    Invariants: a batch is never rolled back wholesale after the broker acknowledged part
    of it (that would orphan the acknowledged records): partial failures commit what was
    acknowledged and come back in ``failed``. Between the first acknowledgement and the
    commit nothing else is awaited than the remaining acknowledgements, the ``UPDATE``, the
    ``DELETE`` (when some failed) and the ``COMMIT``. Callers run this as a task that a
    cancellation waits for (:func:`_outlast_cancellation`). The acknowledgements are awaited
    for ``timeout`` seconds at most (``kafka.append_timeout_s``): past it the unacknowledged
    items fail with :class:`AckTimeout` and their claims are released, so the transaction
    never stays open for a broker outage (see :func:`_produce_all` for why a late delivery
    is harmless)."""
    ordered = sorted(unique, key=lambda item: item.id)
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            ledger.claim_sql(schema),
            *([value(item, topics[item.id]) for item in ordered] for _, _, value in ledger.columns),
        )
        claimed = {r[ledger.id_column] for r in rows}
        fresh = [item for item in unique if item.id in claimed]
        refused = [item for item in unique if item.id not in claimed]
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
            await conn.execute(
                ledger.record_sql(schema),
                [item.id for item, _ in acked],
                [meta.topic for _, meta in acked],
                [meta.partition for _, meta in acked],
                [meta.offset for _, meta in acked],
            )
        if failed:
            await conn.execute(ledger.release_sql(schema), [item.id for item, _ in failed])
    if failed:
        log.warning("%s: %d of %d %s not produced (%s); their ids stay free for a retry",
                    ledger.what, len(failed), len(fresh), ledger.noun, type(failed[0][1]).__name__)
    return Written(acked, refused, failed)


EVENTS: Ledger[Envelope] = Ledger(
    what="append",
    noun="envelope(s)",
    table="event_index",
    id_column="event_id",
    columns=(
        ("event_id", "text", lambda env, _: env.id),
        ("event_type", "text", lambda env, _: env.type),
        ("topic", "text", lambda _, topic: topic),
        ("recorded_at", "timestamptz", lambda env, _: env.recordedat),
    ),
    record=lambda env, topic, now: {
        "topic": topic,
        "value": env.to_bytes(),
        "key": env.partitionkey.encode(),
        "headers": record_headers(env),
        "timestamp_ms": timestamp_ms(env, now),
    },
)

DEAD_LETTERS: Ledger[DeadLetter] = Ledger(
    what="dead letters",
    noun="letter(s)",
    table="deadletters",
    id_column="id",
    columns=(
        ("id", "text", lambda dl, _: dl.id),
        ("source", "text", lambda dl, _: dl.source),
        ("source_family", "text", lambda dl, _: dl.source_family),
        ("profile", "text", lambda dl, _: dl.profile),
        ("record_ref", "text", lambda dl, _: dl.record_ref),
        ("stage", "text", lambda dl, _: dl.stage),
        ("reason", "text", lambda dl, _: dl.reason),
        ("at", "timestamptz", lambda dl, _: dl.at),
        ("record", "jsonb", lambda dl, _: dl.model_dump_json()),
    ),
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
        appended = [
            LoggedEvent(meta.topic, meta.partition, meta.offset, ms_to_datetime(meta.timestamp), env)
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

        The same transaction as :meth:`append` (:func:`claim_then_produce`). Raises
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
        """:func:`claim_then_produce` as a task that a cancellation of the caller waits for
        (then re-raises): the offsets of what the broker acknowledged are committed, never
        abandoned between the acknowledgement and the commit."""
        body = asyncio.ensure_future(
            claim_then_produce(self.pool, self.producer, self.schema, ledger, unique, topics, self.mac_keys,
                               self.settings.kafka.append_timeout_s)
        )
        try:
            return await asyncio.shield(body)
        except asyncio.CancelledError:
            await _outlast_cancellation(body)
            raise

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

