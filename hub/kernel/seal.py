"""Tamper evidence, part 1: sealing. Pure hash-chain functions and the sealing process.

Per fact-topic partition the sealer extends a SHA-256 hash chain over every record::

    digest(r) = SHA-256( "hub-record-v1" ‖ timestamp ‖ key ‖ value ‖ headers )
    head_0    = SHA-256( "hub-chain-v1" ‖ topic ‖ partition )
    head_i    = SHA-256( head_{i-1} ‖ offset(r_i) ‖ digest(r_i) )

(every variable-length field is length-prefixed, an absent key/value is length -1). Each
run commits, per partition with new records, one seal: the offsets it covers, the record
count, the partition's log-start offset, the chain head after its last record, the hash
of the previous seal and its own hash. A seal goes to the seal topic AND to PostgreSQL
(``<core>.seals``), together with each sealed record's digest (``<core>.sealed_records``),
so that :mod:`hub.kernel.verify` can name the exact offset of an altered or reordered record and
notice a changed copy of a seal on either side.

Invariants: seals of one partition form a chain (``prev_seal_hash``) whose offset ranges
are contiguous and increasing; a sealed record is never re-sealed; only one sealer runs
at a time per core schema (PostgreSQL advisory lock).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition

from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import offset_bounds, scan_partitions, topic_partitions
from hub.kernel.settings import Settings
from schemas.seal import SealRecord
from schemas.topics import seal_topic, sealed_topics

log = logging.getLogger(__name__)

GENESIS_SEAL = "0" * 64
SEAL_LOCK = "hub.kernel.seal"


# --------------------------------------------------------------------------- pure chain


def _lp(data: bytes | None) -> bytes:
    if data is None:
        return (-1).to_bytes(8, "big", signed=True)
    return len(data).to_bytes(8, "big", signed=True) + data


def record_digest(
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    """The digest of one record's content (its position enters the chain, not the digest,
    so a record moved to another offset is recognised as moved, not as new)."""
    h = hashlib.sha256(b"hub-record-v1")
    h.update(timestamp.to_bytes(8, "big", signed=True))
    h.update(_lp(key))
    h.update(_lp(value))
    h.update(len(headers).to_bytes(4, "big"))
    for name, val in headers:
        h.update(_lp(name.encode()))
        h.update(_lp(val))
    return h.digest()


def genesis(topic: str, partition: int) -> bytes:
    return hashlib.sha256(b"hub-chain-v1" + _lp(topic.encode()) + partition.to_bytes(4, "big")).digest()


def chain_step(head: bytes, offset: int, digest: bytes) -> bytes:
    return hashlib.sha256(head + offset.to_bytes(8, "big", signed=True) + digest).digest()


def extend_chain(head: bytes, links: Iterable[tuple[int, bytes]]) -> bytes:
    """The head after chaining ``(offset, digest)`` pairs onto ``head``."""
    for offset, digest in links:
        head = chain_step(head, offset, digest)
    return head


@dataclass(frozen=True)
class ChainRecord:
    """What the chain needs of one Kafka record."""

    offset: int
    digest: bytes
    event_id: str | None


def chain_record(rec) -> ChainRecord:  # rec: aiokafka ConsumerRecord
    headers = list(rec.headers or ())
    event_id = next((v.decode(errors="replace") for k, v in headers if k == "ce_id" and v), None)
    digest = record_digest(rec.timestamp, rec.key, rec.value, headers)
    return ChainRecord(rec.offset, digest, event_id)


def next_seal(
    topic: str,
    partition: int,
    previous: SealRecord | None,
    records: Sequence[ChainRecord],
    log_start_offset: int,
    now: datetime,
) -> SealRecord:
    """The seal that extends ``previous`` over ``records`` (offset order, non-empty)."""
    if not records:
        raise ValueError("nothing to seal")
    if previous is not None and records[0].offset <= previous.last_offset:
        raise ValueError(f"{topic}[{partition}]@{records[0].offset} is already sealed")
    start = bytes.fromhex(previous.head_hash) if previous else genesis(topic, partition)
    head = extend_chain(start, ((r.offset, r.digest) for r in records))
    return SealRecord(
        topic=topic,
        partition=partition,
        seq=previous.seq + 1 if previous else 1,
        first_offset=records[0].offset,
        last_offset=records[-1].offset,
        record_count=len(records),
        log_start_offset=log_start_offset,
        head_hash=head.hex(),
        prev_seal_hash=previous.seal_hash if previous else GENESIS_SEAL,
        sealed_at=now,
    ).sealed()


# --------------------------------------------------------------------------- I/O


def _row_to_seal(row: asyncpg.Record) -> SealRecord:
    return SealRecord(
        topic=row["topic"],
        partition=row["partition"],
        seq=row["seq"],
        first_offset=row["first_offset"],
        last_offset=row["last_offset"],
        record_count=row["record_count"],
        log_start_offset=row["log_start_offset"],
        head_hash=row["head_hash"],
        prev_seal_hash=row["prev_seal_hash"],
        sealed_at=row["sealed_at"],
        seal_hash=row["seal_hash"],
    )


async def load_seals(pool: asyncpg.Pool, schema: str) -> dict[tuple[str, int], list[SealRecord]]:
    rows = await pool.fetch(f'SELECT * FROM {schema}.seals ORDER BY topic, "partition", seq')
    out: dict[tuple[str, int], list[SealRecord]] = {}
    for r in rows:
        out.setdefault((r["topic"], r["partition"]), []).append(_row_to_seal(r))
    return out


async def read_chain_records(
    clients: KafkaClients,
    tps: Sequence[TopicPartition],
    ends: Mapping[TopicPartition, int],
    *,
    starts: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, list[ChainRecord]]:
    """Per partition, its records from ``starts`` (default: the log start) up to ``ends``
    (exclusive) as :class:`ChainRecord`, in offset order: one batch scan over every partition."""
    out: dict[TopicPartition, list[ChainRecord]] = {tp: [] for tp in tps}
    async for rec in scan_partitions(clients, tps, role="seal", from_offsets=starts, ends=ends):
        out[TopicPartition(rec.topic, rec.partition)].append(chain_record(rec))
    return out


@dataclass
class SealRunResult:
    seals: list[SealRecord]
    skipped_locked: bool = False

    @property
    def records(self) -> int:
        return sum(s.record_count for s in self.seals)


class Sealer:
    """Seals every fact partition's and the audit topic's new records. ``await run_once()``
    per round. Kafka is reached through ``clients``, the process's client factory
    (``rt.kafka``)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, clients: KafkaClients) -> None:
        self.settings = settings
        self.pool = pool
        self.clients = clients
        self.schema = settings.core_schema
        self.seal_topic = seal_topic(settings.kafka.topic_prefix)

    async def run_once(self) -> SealRunResult:
        async with self.pool.acquire() as lock_conn:
            got = await lock_conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", SEAL_LOCK, self.schema
            )
            if not got:
                return SealRunResult([], skipped_locked=True)
            try:
                return SealRunResult(await self._seal_all())
            finally:
                await lock_conn.execute(
                    "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", SEAL_LOCK, self.schema
                )

    async def _seal_all(self) -> list[SealRecord]:
        latest = {k: v[-1] for k, v in (await load_seals(self.pool, self.schema)).items()}
        clients = self.clients
        tps = await topic_partitions(clients, sealed_topics(self.settings.kafka.topic_prefix))
        if not tps:
            return []
        starts, ends = await offset_bounds(clients, tps)
        begins = {}
        for tp in tps:
            previous = latest.get((tp.topic, tp.partition))
            begins[tp] = max(starts[tp], previous.last_offset + 1 if previous else 0)
        records = await read_chain_records(clients, tps, ends, starts=begins)
        producer = clients.producer("seal")
        await producer.start()
        made: list[SealRecord] = []
        try:
            for tp in tps:
                if not records[tp]:
                    continue
                previous = latest.get((tp.topic, tp.partition))
                seal = next_seal(tp.topic, tp.partition, previous, records[tp], starts[tp], datetime.now(UTC))
                await self._commit(producer, seal, records[tp])
                made.append(seal)
        finally:
            await producer.stop()
        return made

    async def _commit(self, producer: AIOKafkaProducer, seal: SealRecord, records: list[ChainRecord]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "sealed_records",
                schema_name=self.schema,
                records=[(seal.topic, seal.partition, r.offset, r.digest) for r in records],
                columns=["topic", "partition", "offset", "digest"],
            )
            await conn.execute(
                f"""INSERT INTO {self.schema}.seals (topic, "partition", seq, first_offset, last_offset,
                      record_count, log_start_offset, head_hash, prev_seal_hash, seal_hash, sealed_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
                seal.topic, seal.partition, seal.seq, seal.first_offset, seal.last_offset,
                seal.record_count, seal.log_start_offset, seal.head_hash, seal.prev_seal_hash,
                seal.seal_hash, seal.sealed_at,
            )
            value = seal.model_dump_json().encode()
            meta = await (await producer.send(self.seal_topic, value=value, key=seal.key.encode()))
            await conn.execute(
                f"UPDATE {self.schema}.seals SET seal_topic_offset = $4"
                ' WHERE topic = $1 AND "partition" = $2 AND seq = $3',
                seal.topic, seal.partition, seal.seq, meta.offset,
            )
        log.info("sealed %s[%d] %d..%d", seal.topic, seal.partition, seal.first_offset, seal.last_offset)

