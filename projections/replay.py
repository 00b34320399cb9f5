"""Rebuild every read model from the log into a fresh schema, through a batch path in
bounded memory: large ``getmany`` fetches (:func:`hub.kernel.kafka_io.scan_records`) streamed
into a local spill of facts whose components are resolved from their keys as they are read
(:mod:`projections.buckets`), then :func:`~projections.fold.derive` over one bucket of
whole components at a time (in this process, or in worker processes while this one loads),
each bucket ``COPY``-ed (``copy_records_to_table``) into PostgreSQL as it is ready — no
per-event round trip, and never the whole log in memory. The load runs in one
transaction with the schema's indexes and primary keys dropped and rebuilt after it, then
``ANALYZE``; a failure leaves the fresh schema as empty as it was.

Two cut-offs, combinable: ``as_of`` — *known at*: only events whose ``recordedat`` is at or
before it (what the hub knew at that time; the same rule as
:meth:`hub.kernel.log.EventLog.replay`); ``occurred_through`` — *occurred through*: only
facts that happened (the envelope's ``time``) at or before it, whenever they were recorded
(what had happened by then, with every late export and revision since). Records the live projector
dead-letters (not a valid envelope, unknown type, invalid payload) are skipped here too,
so a full replay equals the live read models table by table, positions included; so are
records the live projector quarantines (:class:`hub.kernel.quarantine.RecordGuard`: no valid
record MAC and not a pre-MAC record the event index confirms) — counted, never folded.

Meaning is applied here, not read from the log: the configured vocabularies
(``projections.vocabularies``) classify every call, so a corrected vocabulary and a replay
reclassify all history; the schema records the vocabularies it was built with. Sealed
disposition texts are opened with ``keys`` (the key ids collected while the log is read,
resolved in one call before the buckets are derived; the snapshot goes to the worker
processes with each bucket, the opened texts are never written anywhere), exactly as the
live projector opens them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from aiokafka.structs import ConsumerRecord

from hub.kernel.crypto import Keyring, KeyStore
from hub.kernel.db import apply_sets, check_schema_name, open_pool, runtime_grantee
from hub.kernel.errors import PermanentError
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from hub.kernel.keys import record_mac_keys
from hub.kernel.log import decode_record, family_topics, ms_to_datetime
from hub.kernel.quarantine import RecordGuard
from hub.kernel.settings import Settings
from projections import tables as T
from projections.buckets import BUCKET_FACTS, DerivedBucket, FactSpill, count_rows, derive_bucket, record_keys
from projections.config import FoldConfig
from projections.counts import Cell
from projections.incidents import sealed_kids
from projections.store import (
    READ_MODEL_MIGRATIONS,
    copy_records,
    copy_rows,
    load_without_indexes,
    vocabulary_meta,
    write_meta,
)
from schemas.envelope import Envelope

log = logging.getLogger(__name__)

#: records per RecordGuard call (at most one PostgreSQL query each, for pre-MAC records)
GUARD_BATCH = 2000


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
    Kafka client factory; ``bucket_facts`` bounds the facts derived at once (a component
    is never split, see :mod:`projections.buckets`); ``workers`` > 0 derives the buckets in
    that many worker processes while this one loads them; ``keys`` (the process's key
    store) opens sealed disposition texts to classify them — give it, or a replay differs
    from the live read models wherever a later vocabulary names such a text. The spill lives
    in a temporary directory (``TMPDIR``): about twice 800 bytes per fact at its peak."""
    check_schema_name(schema)
    if as_of is not None and as_of.tzinfo is None:
        raise ReplayError("--as-of must carry a time zone (e.g. 2024-03-01T00:00:00Z)")
    if occurred_through is not None and occurred_through.tzinfo is None:
        raise ReplayError("--occurred-through must carry a time zone (e.g. 2024-03-01T00:00:00Z)")
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
    stats = ReplayStats()
    cfg = FoldConfig.from_settings(settings)
    positions: dict[tuple[str, int], int] = {}
    topics = family_topics(settings.kafka.topic_prefix)
    guard = RecordGuard(record_mac_keys(settings), pool, settings.core_schema)
    kids: set[str] = set()  # key ids of sealed words the fold opens
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hub-replay-") as tmp:
        spill = FactSpill(Path(tmp), bucket_facts)
        async for batch in _batches(scan_records(clients, topics, role="replay"), GUARD_BATCH):
            verdicts = await guard.check(batch)
            for rec, refused in zip(batch, verdicts, strict=True):
                stats.records += 1
                envelope: Envelope | None = None
                touched: tuple[str, ...] | None = None
                if refused is None:
                    try:
                        envelope = decode_record(rec).envelope
                        touched = record_keys(envelope.type, envelope.id, envelope.data)
                    except Exception:  # not an envelope, unknown type
                        envelope, touched = None, None
                recorded = envelope.recordedat if envelope is not None else ms_to_datetime(rec.timestamp)
                if as_of is not None and recorded > as_of:
                    stats.skipped_as_of += 1
                    continue
                positions[(rec.topic, rec.partition)] = rec.offset + 1
                if refused is not None:
                    stats.quarantined += 1
                elif envelope is None or touched is None:
                    stats.unreadable += 1
                elif occurred_through is not None and envelope.time > occurred_through:
                    stats.skipped_occurred += 1
                else:
                    parts = (envelope.id, envelope.type, envelope.source, envelope.recordedat, envelope.data)
                    spill.add(parts, touched)
                    kids |= sealed_kids([(envelope.type, envelope.data)])
        keyring = await keys.resolve_ids(kids) if keys is not None and kids else None
        read_at = time.perf_counter()
        counts: Counter[Cell] = Counter()
        paths = spill.bucket_paths()
        log.info("replay into %s: %d records read in %.1f s, %d keys, %d buckets (%.1f s to distribute)",
                 schema, stats.records, read_at - started, len(spill.keys), len(paths),
                 time.perf_counter() - read_at)
        async with (
            open_pool(settings, role="owner", max_size=1) as owner,
            owner.acquire() as conn,
            conn.transaction(),
            load_without_indexes(conn, schema),
        ):
            async with aclosing(_derived(paths, cfg, workers, keyring)) as buckets:
                async for bucket in buckets:
                    await copy_records(conn, schema, bucket.records)
                    counts.update(bucket.counts)
                    stats.facts += bucket.facts
                    stats.rows += bucket.rows
                    stats.duplicates += bucket.duplicates
                    stats.unreadable += bucket.unreadable
            tail = {
                T.OUTCOME_COUNTS.name: count_rows(counts),
                T.POSITIONS.name: {
                    k: {"topic": k[0], "partition": k[1], "next_offset": v} for k, v in positions.items()
                },
            }
            await copy_rows(conn, schema, tail)
            await write_meta(conn, schema, vocabulary_meta(cfg.vocabularies))
            stats.rows += sum(len(r) for r in tail.values())
            loaded_at = time.perf_counter()
        log.info("replay into %s: %d facts, %d rows derived and loaded in %.1f s, indexes and ANALYZE %.1f s",
                 schema, stats.facts, stats.rows, loaded_at - read_at, time.perf_counter() - loaded_at)
    return stats


async def _derived(
    paths: list[Path], cfg: FoldConfig, workers: int, keyring: Keyring | None
) -> AsyncGenerator[DerivedBucket, None]:
    """The buckets derived in this process (``workers`` 0, or a single bucket), or by
    ``workers`` processes with at most ``workers + 1`` buckets in flight (memory stays
    bounded), in completion order."""
    if workers <= 0 or len(paths) < 2:
        for path in paths:
            yield derive_bucket(path, cfg, keyring)
        return
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        todo = list(reversed(paths))
        running: set[asyncio.Future[DerivedBucket]] = set()
        try:
            while todo or running:
                while todo and len(running) < workers + 1:
                    running.add(loop.run_in_executor(pool, derive_bucket, todo.pop(), cfg, keyring))
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in running:
                fut.cancel()


async def _batches(records: AsyncIterator[ConsumerRecord], size: int) -> AsyncIterator[list[ConsumerRecord]]:
    batch: list[ConsumerRecord] = []
    async for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
