"""Rebuild every read model from the log into a fresh schema, through a batch path in
bounded memory that splits its work over worker processes.

1. *Read.* The fact partitions are split into shards of about equal records, one per
   worker (:func:`scan_shard`, all in this process without workers): each reads its
   partitions with large ``getmany`` fetches up to the log ends seen at the start, checks
   every record (:class:`hub.kernel.quarantine.RecordGuard`), decodes it
   (:mod:`projections.fastdecode`: orjson for the hub's own records, the pydantic envelope
   for any other) and spills it with its component keys (:mod:`projections.buckets`).
2. *Plan.* This process resolves the components of every spilled record from the keys alone
   and packs whole components into buckets (:func:`projections.buckets.plan_buckets`); each
   shard splits its spill into bucket files.
3. *Load.* The buckets are shared out over the workers by size; each worker derives one
   bucket at a time (:func:`projections.buckets.derive_bucket`, the next one while the
   last one's ``COPY`` runs) and ``COPY``-es it (``copy_records_to_table``) over its own
   connection into a *staging* schema (``<schema>_rb<hex>``: the read-model tables, their
   primary keys, unique constraints and indexes dropped), in one transaction per worker.
   No worker waits on another's locks, and no record or row travels between processes.
4. *Finish.* This process loads the summed outcome counts, the positions and the
   vocabularies, ``VACUUM (ANALYZE)``-s every table before its indexes exist (one pass
   over each heap: hint bits and the visibility map set, statistics gathered, so that no
   autovacuum pass over millions of fresh rows follows once they are live — one that still
   comes skips their all-visible pages — and index-only scans work from the first query),
   rebuilds the keys and indexes (by sorting, over two connections); then, in one
   transaction, the target schema's (empty) read-model tables are replaced by the staging
   tables. A failure at any step drops the staging schema and leaves the target as empty
   as it was; a duplicate the load let in fails its primary key
   (``asyncpg.UniqueViolationError``) rather than being stored twice.

Two cut-offs, combinable: ``as_of`` — *known at*: only events whose ``recordedat`` is at or
before it (what the hub knew at that time; the same rule as
:meth:`hub.kernel.log.EventLog.replay`); ``occurred_through`` — *occurred through*: only
facts that happened (the envelope's ``time``) at or before it, whenever they were recorded
(what had happened by then, with every late export and revision since). Records the live projector
dead-letters (not a valid envelope, unknown type, invalid payload) are skipped here too,
so a full replay equals the live read models table by table, positions included; so are
records the live projector quarantines (no valid record MAC and not a pre-MAC record the
event index confirms) — counted, never folded. Of two records with one event id the first
read is kept (within a partition, the earlier; across partitions, as the reads meet, like
the live projector).

Meaning is applied here, not read from the log: the configured vocabularies
(``projections.vocabularies``) classify every call, so a corrected vocabulary and a replay
reclassify all history; the schema records the vocabularies it was built with. Sealed
disposition texts are opened with ``keys`` (the key ids collected while the log is read,
resolved in one call before the buckets are derived; the snapshot goes to the worker
processes, the opened texts are never written anywhere), exactly as the live projector
opens them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka.structs import ConsumerRecord, TopicPartition

from hub.kernel.crypto import Keyring, KeyStore
from hub.kernel.db import Connection, apply_sets, check_schema_name, open_pool, runtime_grantee
from hub.kernel.errors import PermanentError
from hub.kernel.gcpolicy import batch_gc
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, scan_partitions, topic_partitions
from hub.kernel.keys import record_mac_keys
from hub.kernel.log import family_topics, ms_to_datetime
from hub.kernel.quarantine import RecordGuard
from hub.kernel.settings import Settings
from projections import tables as T
from projections.buckets import (
    BUCKET_FACTS,
    DerivedBucket,
    SpillFiles,
    SpillWriter,
    count_rows,
    derive_bucket,
    distribute,
    encode_parts,
    plan_buckets,
    record_keys,
)
from projections.config import FoldConfig
from projections.counts import Cell
from projections.fastdecode import RecordParts, record_parts
from projections.incidents import sealed_kids
from projections.store import READ_MODEL_MIGRATIONS, copy_records, copy_rows, vocabulary_meta, write_meta

log = logging.getLogger(__name__)

#: records per RecordGuard call (at most one PostgreSQL query each, for pre-MAC records)
GUARD_BATCH = 2000
#: GUARD_BATCHes per garbage collection while reading (each one traverses the prefetched records)
SCAN_GC_BATCHES = 25
#: connections that vacuum the tables and rebuild the keys and indexes at the end
INDEX_CONNECTIONS = 2
R = TypeVar("R")


class ReplayError(PermanentError, RuntimeError):
    """The target schema is not fresh, or the replay cannot run."""


@dataclass
class ReplayStats:
    records: int = 0
    facts: int = 0
    duplicates: int = 0
    skipped_as_of: int = 0
    skipped_occurred: int = 0
    unreadable: int = 0
    quarantined: int = 0
    rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    """Wall seconds of each phase of the whole replay (``read``, ``plan``, ``load``,
    ``finish``; see the module docstring); empty in a shard's or loader's counters; not
    part of equality (two replays of one log are equal when their counters are)."""

    def add(self, other: ReplayStats) -> None:
        """Add ``other``'s counters to these."""
        for name in self.__dataclass_fields__:
            if name != "seconds":
                setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class ShardScan:
    """What one reader found: its counters, the next offset of each of its partitions, the
    key ids of sealed words, and its spill."""

    stats: ReplayStats
    positions: dict[tuple[str, int], int]
    kids: set[str]
    spill: SpillFiles


@dataclass
class Loaded:
    """What one loader wrote: its counters and its buckets' summed outcome counts."""

    stats: ReplayStats = field(default_factory=ReplayStats)
    counts: Counter[Cell] = field(default_factory=Counter)


async def replay_into(
    settings: Settings,
    pool: asyncpg.Pool,
    clients: KafkaClients,
    schema: str,
    *,
    as_of: datetime | None = None,
    occurred_through: datetime | None = None,
    bucket_facts: int = BUCKET_FACTS,
    workers: int = 0,
    keys: KeyStore | None = None,
) -> ReplayStats:
    """Build the read models of the whole log (or of the log as of ``as_of``) in ``schema``,
    which must not hold read models yet. The log is read through ``clients``, the process's
    Kafka client factory (worker processes build theirs from ``settings``); ``pool`` checks
    pre-MAC records against the event index; ``bucket_facts`` bounds the facts derived at
    once (a component is never split, see :mod:`projections.buckets`); ``workers`` > 0
    splits the reading and the loading over that many worker processes (0: all in this
    one); ``keys`` (the process's key store) opens sealed disposition texts to classify
    them — give it, or a replay differs from the live read models wherever a later
    vocabulary names such a text. The spill lives in a temporary directory (``TMPDIR``):
    about twice the log's bytes at its peak."""
    check_schema_name(schema)
    if as_of is not None and as_of.tzinfo is None:
        raise ReplayError("--as-of must carry a time zone (e.g. 2024-03-01T00:00:00Z)")
    if occurred_through is not None and occurred_through.tzinfo is None:
        raise ReplayError("--occurred-through must carry a time zone (e.g. 2024-03-01T00:00:00Z)")
    if workers < 0:
        raise ReplayError("workers must be 0 or more")
    exists = await pool.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'facts'",
        schema,
    )
    if exists:
        has_rows = await pool.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{schema}".facts)')
        if has_rows:
            raise ReplayError(f"schema {schema} already holds read models; replay needs a fresh schema")
    async with open_pool(settings, role="owner", max_size=1) as owner:  # the runtime role creates nothing
        await apply_sets(
            owner, (READ_MODEL_MIGRATIONS,), "read_models", schema, grant_to=runtime_grantee(settings)
        )
    cfg = FoldConfig.from_settings(settings)
    started = time.perf_counter()
    tps = await topic_partitions(clients, family_topics(settings.kafka.topic_prefix))
    ends = await end_offsets(clients, tps) if tps else {}
    shards = shard_partitions(ends, max(1, workers))
    stats = ReplayStats()
    positions: dict[tuple[str, int], int] = {}
    kids: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="hub-replay-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        loop = asyncio.get_running_loop()
        procs = stack.enter_context(
            ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        ) if workers else None

        def run(fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
            return loop.run_in_executor(procs, fn, *args)

        if procs is not None:
            scans = list(await asyncio.gather(*(
                run(scan_shard_in_process, settings, {tp: ends[tp] for tp in shard}, directory, i, as_of,
                    occurred_through)
                for i, shard in enumerate(shards)
            )))
        else:
            scans = [await scan_shard(
                settings, clients, pool, shards[0], ends, directory, 0, as_of, occurred_through
            )]
        for scan in scans:
            stats.add(scan.stats)
            positions.update(scan.positions)
            kids |= scan.kids
        read_at = time.perf_counter()
        plan = plan_buckets([s.spill.keys for s in scans], bucket_facts)
        for s in scans:
            s.spill.keys.unlink()
        splits = [(s.spill.spill, plan.assignments[i], directory, i) for i, s in enumerate(scans)]
        if procs is not None:
            parts = list(await asyncio.gather(*(run(distribute, *a) for a in splits)))
        else:
            parts = [distribute(*a) for a in splits]
        del plan.assignments[:]
        buckets = [[p[b] for p in parts if b in p] for b in range(len(plan.sizes))]
        keyring = await keys.resolve_ids(kids) if keys is not None and kids else None
        planned_at = time.perf_counter()
        log.info("replay into %s: %d records read in %.1f s by %d reader(s); %d buckets planned in %.1f s",
                 schema, stats.records, read_at - started, len(shards), len(buckets), planned_at - read_at)
        async with staging_schema(settings, schema) as staging:
            shares = [[buckets[b] for b in sh] for sh in share_out(plan.sizes, max(1, workers)) if sh]
            if procs is not None:
                loads = list(await asyncio.gather(*(
                    run(load_buckets_in_process, settings, staging.name, sh, cfg, keyring) for sh in shares
                )))
            else:
                loads = [await load_buckets(settings, staging.name, share, cfg, keyring) for share in shares]
            counts: Counter[Cell] = Counter()
            for loaded in loads:
                stats.add(loaded.stats)
                counts.update(loaded.counts)
            loaded_at = time.perf_counter()
            stats.rows += await finish(settings, staging, schema, counts, positions, cfg)
    stats.seconds = {
        "read": round(read_at - started, 2), "plan": round(planned_at - read_at, 2),
        "load": round(loaded_at - planned_at, 2), "finish": round(time.perf_counter() - loaded_at, 2),
    }
    log.info("replay into %s: %d facts, %d rows loaded by %d loader(s) in %.1f s; VACUUM, keys, "
             "indexes, swap %.1f s", schema, stats.facts, stats.rows, len(loads), loaded_at - planned_at,
             time.perf_counter() - loaded_at)
    return stats


def shard_partitions(ends: dict[TopicPartition, int], shards: int) -> list[list[TopicPartition]]:
    """``ends``' partitions in ``shards`` groups of about equal records (largest first into
    the emptiest group); always ``shards`` groups, some perhaps empty (pure)."""
    groups: list[list[TopicPartition]] = [[] for _ in range(shards)]
    load = [0] * shards
    for tp in sorted(ends, key=lambda tp: (-ends[tp], tp)):
        i = load.index(min(load))
        groups[i].append(tp)
        load[i] += ends[tp]
    return [sorted(g) for g in groups]


def share_out(sizes: Sequence[int], loaders: int) -> list[list[int]]:
    """Bucket indexes in ``loaders`` shares of about equal records (largest bucket first
    into the lightest share; pure)."""
    shares: list[list[int]] = [[] for _ in range(loaders)]
    load = [0] * loaders
    for b in sorted(range(len(sizes)), key=lambda b: -sizes[b]):
        i = load.index(min(load))
        shares[i].append(b)
        load[i] += sizes[b]
    return shares


# --------------------------------------------------------------------------- 1. read


async def scan_shard(
    settings: Settings,
    clients: KafkaClients,
    pool: asyncpg.Pool,
    tps: Sequence[TopicPartition],
    ends: dict[TopicPartition, int],
    directory: Path,
    shard: int,
    as_of: datetime | None,
    occurred_through: datetime | None,
) -> ShardScan:
    """Read ``tps`` up to their ``ends`` and spill every record to fold (see the module docstring);
    ``pool`` checks pre-MAC records against the event index."""
    stats = ReplayStats()
    positions: dict[tuple[str, int], int] = {}
    kids: set[str] = set()
    guard = RecordGuard(record_mac_keys(settings), pool, settings.core_schema)
    spill = SpillWriter(directory, shard)
    if tps:
        records = scan_partitions(clients, tps, role="replay", ends={tp: ends[tp] for tp in tps})
        with batch_gc(SCAN_GC_BATCHES) as collector:  # not a young collection per 700 objects
            async for batch in _batches(records, GUARD_BATCH):
                verdicts = await guard.check(batch)
                for rec, refused in zip(batch, verdicts, strict=True):
                    stats.records += 1
                    parts: RecordParts | None = None
                    touched: tuple[str, ...] | None = None
                    if refused is None:
                        try:
                            parts = record_parts(rec)
                            touched = record_keys(parts.event_type, parts.event_id, parts.data)
                        except Exception:  # not an envelope, unknown type
                            parts, touched = None, None
                    recorded = parts.recorded_at if parts is not None else ms_to_datetime(rec.timestamp)
                    if as_of is not None and recorded > as_of:
                        stats.skipped_as_of += 1
                        continue
                    positions[(rec.topic, rec.partition)] = rec.offset + 1
                    if refused is not None:
                        stats.quarantined += 1
                    elif parts is None or touched is None:
                        stats.unreadable += 1
                    elif occurred_through is not None and parts.time > occurred_through:
                        stats.skipped_occurred += 1
                    else:
                        blob = rec.value if parts.raw_is_current else encode_parts(
                            (parts.event_id, parts.event_type, parts.source, parts.recorded_at, parts.data)
                        )
                        spill.add(blob, touched)
                        kids |= sealed_kids([(parts.event_type, parts.data)])
                collector.batch_done()
    return ShardScan(stats, positions, kids, spill.close())


def scan_shard_in_process(
    settings: Settings, ends: dict[TopicPartition, int], directory: Path, shard: int,
    as_of: datetime | None, occurred_through: datetime | None,
) -> ShardScan:
    """:func:`scan_shard` in a worker process (its own Kafka clients and pool)."""

    async def go() -> ShardScan:
        async with open_pool(settings, max_size=1) as pool:
            clients = KafkaClients(settings.kafka)
            return await scan_shard(
                settings, clients, pool, sorted(ends), ends, directory, shard, as_of, occurred_through
            )

    return asyncio.run(go())


async def _batches(records: AsyncIterator[ConsumerRecord], size: int) -> AsyncIterator[list[ConsumerRecord]]:
    batch: list[ConsumerRecord] = []
    async for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- 3. load


async def load_buckets(
    settings: Settings, staging: str, buckets: Sequence[Sequence[Path]], cfg: FoldConfig,
    keyring: Keyring | None,
) -> Loaded:
    """Derive and ``COPY`` ``buckets`` (each its files) into ``staging`` over one connection,
    in one transaction; the next bucket is derived (in a thread) while the last one's
    ``COPY`` runs."""
    out = Loaded()
    if not buckets:
        return out
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as thread, batch_gc() as collector:
        async with (
            open_pool(settings, role="owner", max_size=1) as owner,
            owner.acquire() as conn,
            conn.transaction(),
        ):
            await conn.execute("SET LOCAL synchronous_commit = off")  # staging: durable once swapped in
            ahead = loop.run_in_executor(thread, derive_bucket, buckets[0], cfg, keyring)
            for i in range(len(buckets)):
                bucket: DerivedBucket = await ahead
                if i + 1 < len(buckets):
                    ahead = loop.run_in_executor(thread, derive_bucket, buckets[i + 1], cfg, keyring)
                await copy_records(conn, staging, bucket.records)
                out.counts.update(bucket.counts)
                out.stats.facts += bucket.facts
                out.stats.rows += bucket.rows
                out.stats.duplicates += bucket.duplicates
                out.stats.unreadable += bucket.unreadable
                del bucket
                collector.batch_done()
    return out


def load_buckets_in_process(
    settings: Settings, staging: str, buckets: Sequence[Sequence[Path]], cfg: FoldConfig,
    keyring: Keyring | None,
) -> Loaded:
    """:func:`load_buckets` in a worker process."""
    return asyncio.run(load_buckets(settings, staging, buckets, cfg, keyring))


# --------------------------------------------------------------------------- staging, 4. finish


def staging_name(schema: str) -> str:
    """A fresh staging schema name for ``schema`` (a valid schema name, ≤ 63 characters)."""
    return check_schema_name(f"{schema[:50]}_rb{uuid.uuid4().hex[:8]}")


@dataclass
class Restore:
    """What rebuilds a schema's keys and indexes: the indexes (those behind the primary keys
    and unique constraints too) as ``(table, CREATE INDEX …)``, which may run at once, then
    the constraints adopting their indexes (``… USING INDEX``)."""

    indexes: list[tuple[str, str]] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)


@dataclass
class Staging:
    """The staging schema of one replay and what rebuilds its keys and indexes."""

    name: str
    restore: Restore = field(default_factory=Restore)


@asynccontextmanager
async def staging_schema(settings: Settings, schema: str) -> AsyncIterator[Staging]:
    """A fresh staging schema for ``schema`` holding the read-model tables without their keys
    and indexes (the statements that rebuild them kept for :func:`finish`); dropped when the
    block ends, whatever happened (after :func:`finish` it is empty)."""
    staging = Staging(staging_name(schema))
    try:
        async with open_pool(settings, role="owner", max_size=1) as owner:
            await apply_sets(owner, (READ_MODEL_MIGRATIONS,), "read_models", staging.name,
                             grant_to=runtime_grantee(settings))
            async with owner.acquire() as conn, conn.transaction():
                staging.restore = await drop_keys_and_indexes(conn, staging.name)
        yield staging
    finally:
        async with open_pool(settings, role="owner", max_size=1) as owner:
            await owner.execute(f'DROP SCHEMA IF EXISTS "{staging.name}" CASCADE')


async def drop_keys_and_indexes(conn: Connection, schema: str) -> Restore:
    """Drop the primary keys, unique constraints and indexes of ``schema``'s tables; returns
    the statements that rebuild them (:class:`Restore`)."""
    check_schema_name(schema)
    constraints = await conn.fetch(
        """SELECT c.conname, t.relname, c.contype, pg_get_indexdef(c.conindid) AS indexdef
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND c.contype IN ('p', 'u') ORDER BY t.relname, c.conname""",
        schema,
    )
    indexes = await conn.fetch(
        """SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = $1 AND NOT EXISTS (
                  SELECT 1 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                   WHERE n.nspname = $1 AND c.conname = i.indexname)
            ORDER BY i.indexname""",
        schema,
    )
    restore = Restore()
    for r in indexes:
        await conn.execute(f'DROP INDEX "{schema}"."{r["indexname"]}"')
        restore.indexes.append((r["tablename"], r["indexdef"]))
    for r in constraints:
        table, name = f'"{schema}"."{r["relname"]}"', f'"{r["conname"]}"'
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        restore.indexes.append((r["relname"], r["indexdef"]))  # the index keeps the constraint's name
        kind = "PRIMARY KEY" if r["contype"] == "p" else "UNIQUE"
        restore.constraints.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}")
    return restore


async def finish(
    settings: Settings, staging: Staging, schema: str, counts: Counter[Cell],
    positions: dict[tuple[str, int], int], cfg: FoldConfig,
) -> int:
    """Load the outcome counts, positions and vocabularies into ``staging``, ``VACUUM
    (ANALYZE)`` its tables, rebuild its indexes (over :data:`INDEX_CONNECTIONS` connections
    at once, the largest tables' first) and its keys (adopting their indexes), then replace
    ``schema``'s read-model tables by ``staging``'s in one transaction, unless ``schema``
    holds facts by then (a :class:`ReplayError`: two replays into one schema, the first to
    finish wins). Returns the rows loaded here."""
    tail = {
        T.OUTCOME_COUNTS.name: count_rows(counts),
        T.POSITIONS.name: {
            k: {"topic": k[0], "partition": k[1], "next_offset": v} for k, v in positions.items()
        },
    }
    restore, name = staging.restore, staging.name
    async with open_pool(settings, role="owner", max_size=INDEX_CONNECTIONS) as owner:
        async with owner.acquire() as conn, conn.transaction():
            await copy_rows(conn, name, tail)
            await write_meta(conn, name, vocabulary_meta(cfg.vocabularies))
        sizes = {r["relname"]: r["size"] for r in await owner.fetch(
            """SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'""",
            name,
        )}
        tables = sorted(sizes, key=lambda t: -sizes[t])
        todo = sorted(restore.indexes, key=lambda ix: -sizes.get(ix[0], 0))  # largest tables first

        async def vacuum(share: list[str]) -> None:
            async with owner.acquire() as conn:
                for table in share:
                    await conn.execute(f'VACUUM (ANALYZE) "{name}"."{table}"')

        # before the indexes: one pass over each heap and nothing else to vacuum
        await asyncio.gather(*(vacuum(tables[i::INDEX_CONNECTIONS]) for i in range(INDEX_CONNECTIONS)))

        async def build() -> None:
            async with owner.acquire() as conn:
                await conn.execute("SET maintenance_work_mem = '256MB'")
                while todo:
                    _, stmt = todo.pop(0)
                    await conn.execute(stmt)

        await asyncio.gather(*(build() for _ in range(INDEX_CONNECTIONS)))
        async with owner.acquire() as conn:
            for stmt in restore.constraints:
                await conn.execute(stmt)
        async with owner.acquire() as conn, conn.transaction():
            await conn.execute(f'LOCK TABLE "{schema}".facts IN ACCESS EXCLUSIVE MODE')
            if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{schema}".facts)'):  # another replay won
                raise ReplayError(f"schema {schema} was filled while this replay ran; nothing replaced")
            for table in tables:
                if table == "schema_migrations":
                    continue  # the target has its own record of the same migrations
                await conn.execute(f'DROP TABLE IF EXISTS "{schema}"."{table}"')
                await conn.execute(f'ALTER TABLE "{name}"."{table}" SET SCHEMA "{schema}"')
    return sum(len(r) for r in tail.values())
