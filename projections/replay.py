"""Rebuild every read model from the log into a fresh schema, through a batch path:
large ``getmany`` fetches (:func:`hub.kernel.kafka_io.scan_records`), one :func:`derive` over all
facts, and ``COPY`` (``copy_records_to_table``) into PostgreSQL — no per-event round trip.

``as_of``: only events whose ``recordedat`` is at or before it (what the hub knew at that
time; the same rule as :meth:`hub.kernel.log.EventLog.replay`). Records the live projector
dead-letters (not a valid envelope, unknown type, invalid payload) are skipped here too,
so a full replay equals the live read models table by table, positions included; so are
records the live projector quarantines (:class:`hub.kernel.quarantine.RecordGuard`: no valid
record MAC and not a pre-MAC record the event index confirms) — counted, never folded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hub.kernel.db import apply_sets, check_schema_name, open_pool, runtime_grantee
from hub.kernel.errors import PermanentError
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from hub.kernel.keys import record_mac_keys
from hub.kernel.log import decode_record, family_topics, ms_to_datetime
from hub.kernel.quarantine import RecordGuard
from hub.kernel.settings import Settings
from projections import tables as T
from projections.config import FoldConfig
from projections.facts import Fact, fact_from_envelope
from projections.fold import derive
from projections.store import READ_MODEL_MIGRATIONS, copy_rows, fact_record
from schemas.envelope import Envelope


class ReplayError(PermanentError, RuntimeError):
    """The target schema is not fresh, or the replay cannot run."""


@dataclass
class ReplayStats:
    records: int = 0
    facts: int = 0
    duplicates: int = 0
    skipped_as_of: int = 0
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
) -> ReplayStats:
    """Build the read models of the whole log (or of the log as of ``as_of``) in ``schema``,
    which must not hold read models yet. The log is read through ``clients``, the process's
    Kafka client factory."""
    check_schema_name(schema)
    if as_of is not None and as_of.tzinfo is None:
        raise ReplayError("--as-of must carry a time zone (e.g. 2024-03-01T00:00:00Z)")
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
    facts: dict[str, Fact] = {}
    positions: dict[tuple[str, int], int] = {}
    topics = family_topics(settings.kafka.topic_prefix)
    guard = RecordGuard(record_mac_keys(settings), pool, settings.core_schema)
    async for rec in scan_records(clients, topics, role="replay"):
        stats.records += 1
        (refused,) = await guard.check([rec])
        envelope: Envelope | None = None
        fact: Fact | None = None
        if refused is None:
            try:
                envelope = decode_record(rec).envelope
                fact = fact_from_envelope(envelope)
            except Exception:
                envelope, fact = None, None
        recorded = envelope.recordedat if envelope is not None else ms_to_datetime(rec.timestamp)
        if as_of is not None and recorded > as_of:
            stats.skipped_as_of += 1
            continue
        positions[(rec.topic, rec.partition)] = rec.offset + 1
        if refused is not None:
            stats.quarantined += 1
        elif fact is None:
            stats.unreadable += 1
        elif fact.event_id in facts:
            stats.duplicates += 1
        else:
            facts[fact.event_id] = fact
    stats.facts = len(facts)
    rows = derive(facts.values(), FoldConfig.from_settings(settings))
    rows[T.POSITIONS.name] = {
        k: {"topic": k[0], "partition": k[1], "next_offset": v} for k, v in positions.items()
    }
    stats.rows = sum(len(r) for r in rows.values())
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(
            "facts",
            schema_name=schema,
            columns=list(T.FACTS.columns),
            records=[fact_record(f) for f in facts.values()],
        )
        await copy_rows(conn, schema, rows)
    return stats
