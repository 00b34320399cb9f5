"""PostgreSQL adapters of the connector state ports (tables in ``settings.core_schema``,
created by the ``connectors`` migrations in ``connectors/migrations``). A PostgreSQL outage
reaches their callers as :class:`hub.kernel.errors.ServiceUnavailable`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from connectors.core.ports import AcceptedDelivery
from connectors.core.records import RevisionKey
from hub.kernel.db import MigrationSet, check_schema_name
from hub.kernel.errors import outage_boundary

#: cursors, revision claims and webhook deliveries, in the namespace's core schema
STATE_MIGRATIONS = MigrationSet("connectors", Path(__file__).resolve().parent.parent / "migrations", "core")


@outage_boundary("cursor store")
class PostgresCursorStore:
    """One JSON cursor per source name; ``save`` is one committed upsert. The newest record
    time seen is kept next to the cursor (never moved backwards)."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)

    async def load(self, source: str) -> Any | None:
        row = await self.pool.fetchrow(
            f"SELECT cursor FROM {self.schema}.connector_cursors WHERE source = $1", source
        )
        return None if row is None else json.loads(row["cursor"])

    async def save(self, source: str, cursor: Any, newest: datetime | None = None) -> None:
        await self.pool.execute(
            f"""INSERT INTO {self.schema}.connector_cursors (source, cursor, updated_at, newest_record_at)
                VALUES ($1, $2::jsonb, now(), $3)
                ON CONFLICT (source) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now(),
                    newest_record_at = GREATEST(connector_cursors.newest_record_at,
                                                EXCLUDED.newest_record_at)""",
            source,
            json.dumps(cursor),
            newest,
        )

    async def newest(self, source: str) -> datetime | None:
        return await self.pool.fetchval(
            f"SELECT newest_record_at FROM {self.schema}.connector_cursors WHERE source = $1", source
        )


@outage_boundary("revision store")
class PostgresRevisionStore:
    """First revision per (source, record key), claimed before the events are appended
    (write-ahead): a crash between claim and append re-maps the record as its first
    revision on restart, so no "received" fact is ever lost or doubled."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)

    async def claim(self, source: str, keys: Sequence[RevisionKey]) -> dict[str, str]:
        """The first revision of every key (the first occurrence in ``keys`` claims a key
        no earlier claim holds), in ONE statement: the INSERT's ``RETURNING`` gives the
        keys this call claimed, the same statement's read the keys claimed before it. A key
        another writer claimed while this statement ran is in neither (the read's snapshot
        predates it, the INSERT skipped it); those few are read again afterwards."""
        first: dict[str, str] = {}
        for k in keys:  # within one batch the first occurrence claims
            first.setdefault(k.key, k.revision)
        names = list(first)
        table = f"{self.schema}.connector_revisions"
        # a join on the key array (not ``record_key = ANY($2)``): with stale statistics the
        # planner filtered every row of the source against the whole array, which made a
        # claim cost O(rows of the source x keys) - 70-140 ms per 500 keys at 30k
        rows = await self.pool.fetch(
            f"""WITH claimed AS (
                    INSERT INTO {table} (source, record_key, first_revision)
                    SELECT $1, k, r FROM unnest($2::text[], $3::text[]) AS u(k, r)
                    ON CONFLICT (source, record_key) DO NOTHING
                    RETURNING record_key, first_revision)
                SELECT record_key, first_revision FROM claimed
                UNION ALL
                SELECT r.record_key, r.first_revision
                FROM unnest($2::text[]) AS u(k) JOIN {table} r ON r.source = $1 AND r.record_key = u.k""",
            source,
            names,
            [first[n] for n in names],
        )
        out = {r["record_key"]: r["first_revision"] for r in rows}
        raced = [n for n in names if n not in out]
        if raced:  # claimed by a concurrent writer during the statement: committed by now
            rows = await self.pool.fetch(
                f"""SELECT r.record_key, r.first_revision
                    FROM unnest($2::text[]) AS u(k) JOIN {table} r ON r.source = $1 AND r.record_key = u.k""",
                source,
                raced,
            )
            out.update({r["record_key"]: r["first_revision"] for r in rows})
        return out


@outage_boundary("webhook delivery store")
class PostgresDeliveryStore:
    """Webhook deliveries already accepted, per receiver, with the digest of their body
    (idempotent retries and replay protection)."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)

    async def lookup(self, receiver: str, delivery_id: str) -> AcceptedDelivery | None:
        row = await self.pool.fetchrow(
            f"""SELECT body_sha256, events, received_at FROM {self.schema}.webhook_deliveries
                WHERE receiver = $1 AND delivery_id = $2""",
            receiver,
            delivery_id,
        )
        if row is None:
            return None
        return AcceptedDelivery(row["body_sha256"], row["events"], row["received_at"])

    async def record(self, receiver: str, delivery_id: str, events: int, body_sha256: str) -> bool:
        row = await self.pool.fetchrow(
            f"""INSERT INTO {self.schema}.webhook_deliveries (receiver, delivery_id, events, body_sha256)
                VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
            receiver,
            delivery_id,
            events,
            body_sha256,
        )
        return row is not None
