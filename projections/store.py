"""The PostgreSQL shell of the projections: migrations, effectively-once batch apply,
stored positions, and bulk loading.

Effectively once: :meth:`ReadModelStore.apply_batch` runs ONE transaction per batch that

1. serializes with every other projector on this schema (advisory transaction lock), so
   two workers never recompute the same component concurrently;
2. skips records below the stored position of their partition (already applied, e.g.
   by the previous owner before a rebalance) and facts whose event id is already stored;
3. stores the new facts (COPY), loads the components they touch (a few set-based queries
   over the ``keys`` GIN index), deletes the rows those components own and COPYs the
   recomputed ones, adds the outcome-count deltas (one ``executemany``);
4. records the next offset of every partition in the batch.

Rows and positions commit together, so a crash or a rebalance at any point either keeps
the whole batch or none of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from hub.kernel.db import Connection, Executor, MigrationSet, check_schema_name
from hub.kernel.metrics import PROJECTION_EVENTS, PROJECTION_TX_LATENCY
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import period_start
from projections.facts import Fact, make_fact
from projections.fold import Plan, Rows, plan

#: the read-model tables, in the namespace's read-model schema (or a replay's fresh schema)
READ_MODEL_MIGRATIONS = MigrationSet(
    "projections", Path(__file__).resolve().parent / "migrations", "read_models"
)
_JSON_COLUMNS = {"data", "detail"}
FACT_CACHE_SIZE = 200_000


def fact_record(f: Fact) -> tuple:
    return T.FACTS.record(
        {
            "event_id": f.event_id,
            "event_type": f.event_type,
            "family": f.family,
            "source": f.source,
            "system": f.system,
            "at": f.at,
            "recorded_at": f.recorded_at,
            "incident_id": f.incident_id,
            "person": f.person,
            "other": f.other,
            "referral_id": f.referral_id,
            "keys": list(f.keys),
            "data": json.dumps(f.data, sort_keys=True),
        }
    )


def fact_from_row(row: asyncpg.Record) -> Fact:
    data = row["data"]
    return make_fact(
        event_id=row["event_id"],
        event_type=row["event_type"],
        source=row["source"],
        recorded_at=row["recorded_at"],
        data=json.loads(data) if isinstance(data, str) else data,
    )


def table_records(table: T.Table, rows: Iterable[dict[str, Any]]) -> list[tuple]:
    out = []
    for row in rows:
        out.append(
            tuple(json.dumps(row[c], sort_keys=True) if c in _JSON_COLUMNS else row[c] for c in table.columns)
        )
    return out


@dataclass(frozen=True)
class Consumed:
    """One record taken from a fact topic; ``fact`` is None when it was dead-lettered."""

    topic: str
    partition: int
    offset: int
    fact: Fact | None


@dataclass
class BatchResult:
    records: int = 0
    skipped_positions: int = 0  # below the stored position (applied before)
    new_facts: int = 0
    duplicate_facts: int = 0
    months: set[date] = field(default_factory=set)  # months whose counts may have changed


class ReadModelStore:
    """Read models in one PostgreSQL schema."""

    def __init__(self, pool: asyncpg.Pool, schema: str, cfg: FoldConfig) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)
        self.cfg = cfg
        self._cache: dict[str, Fact] = {}  # facts are immutable: parse each once per process

    def _remember(self, fact: Fact) -> None:
        if len(self._cache) >= FACT_CACHE_SIZE:
            for key in list(self._cache)[: FACT_CACHE_SIZE // 4]:  # drop the oldest quarter
                del self._cache[key]
        self._cache[fact.event_id] = fact

    def q(self, table: str) -> str:
        return f'"{self.schema}".{table}'

    async def positions(self, conn: Connection | None = None) -> dict[tuple[str, int], int]:
        """Stored next offset per (topic, partition)."""
        sql = f'SELECT topic, "partition", next_offset FROM {self.q("projection_positions")}'
        rows = await (conn.fetch(sql) if conn else self.pool.fetch(sql))
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def apply_batch(self, batch: Sequence[Consumed]) -> BatchResult:
        """Apply one batch effectively once (see module docstring)."""
        result = BatchResult(records=len(batch))
        if not batch:
            return result
        started = time.perf_counter()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('hub.projections'), hashtext($1))", self.schema
            )
            stored = await self.positions(conn)
            fresh = [c for c in batch if c.offset >= stored.get((c.topic, c.partition), 0)]
            result.skipped_positions = len(batch) - len(fresh)
            facts: dict[str, Fact] = {}
            for c in fresh:
                if c.fact is not None:
                    facts.setdefault(c.fact.event_id, c.fact)
            if facts:
                known = {
                    r["event_id"]
                    for r in await conn.fetch(
                        f"SELECT event_id FROM {self.q('facts')} WHERE event_id = any($1::text[])",
                        list(facts),
                    )
                }
                new = [f for eid, f in facts.items() if eid not in known]
                result.duplicate_facts = sum(1 for c in fresh if c.fact) - len(new)
                if new:
                    result.months = await self._apply_facts(conn, new)
                result.new_facts = len(new)
            ends: dict[tuple[str, int], int] = {}
            for c in fresh:
                ends[(c.topic, c.partition)] = max(ends.get((c.topic, c.partition), 0), c.offset + 1)
            if ends:
                await conn.executemany(
                    f"""INSERT INTO {self.q("projection_positions")} (topic, "partition", next_offset)
                        VALUES ($1, $2, $3) ON CONFLICT (topic, "partition")
                        DO UPDATE SET next_offset = greatest(EXCLUDED.next_offset,
                                                             {self.q("projection_positions")}.next_offset)""",
                    [(t, p, o) for (t, p), o in ends.items()],
                )
        PROJECTION_TX_LATENCY.labels("read_models").observe(time.perf_counter() - started)
        PROJECTION_EVENTS.labels("read_models").inc(result.new_facts)
        return result

    async def _apply_facts(self, conn: Connection, new: list[Fact]) -> set[date]:
        await conn.copy_records_to_table(
            "facts",
            schema_name=self.schema,
            columns=list(T.FACTS.columns),
            records=[fact_record(f) for f in new],
        )
        for f in new:
            self._remember(f)
        keys: set[str] = set()
        frontier = {k for f in new for k in f.keys}
        ids: set[str] = set()
        while frontier:  # the components of the new facts: ids and keys only
            keys |= frontier
            rows = await conn.fetch(
                f"""SELECT event_id, keys FROM {self.q("facts")}
                    WHERE keys && $1::text[] AND NOT (event_id = any($2::text[]))""",
                list(frontier),
                list(ids),
            )
            frontier = set()
            for r in rows:
                ids.add(r["event_id"])
                frontier |= set(r["keys"]) - keys
        found = {i: cached for i in ids if (cached := self._cache.get(i)) is not None}
        missing = [i for i in ids if i not in found]
        if missing:
            rows = await conn.fetch(
                f"SELECT * FROM {self.q('facts')} WHERE event_id = any($1::text[])", missing
            )
            for r in rows:
                fact = fact_from_row(r)
                found[fact.event_id] = fact
                self._remember(fact)
        facts = list(found.values())
        incidents = sorted(k[2:] for k in keys if k.startswith("i:"))
        old = [
            dict(r)
            for r in await conn.fetch(
                f"DELETE FROM {self.q('incident_summary')} WHERE incident_id = any($1::text[]) RETURNING *",
                incidents,
            )
        ]
        p = plan(facts, keys, old, self.cfg)
        await self._replace(conn, p)
        months = {
            period_start("month", r["received_at"], self.cfg)
            for r in [*old, *p.rows[T.INCIDENT_SUMMARY.name].values()]
            if r["received_at"] is not None
        }
        return months

    async def _replace(self, conn: Connection, p: Plan) -> None:
        s = p.scope
        persons, referrals = sorted(s.persons), sorted(s.referrals)
        deletes = [
            ("timeline_entries", "event_id", sorted(s.event_ids)),
            ("person_timeline", "person", persons),
            ("person_clusters", "pseudonym", persons),
            ("person_contacts", "person", persons),
            ("person_summary", "person", persons),
            ("consents", "person", persons),
            ("person_demographics", "person", persons),
            ("referral_funnel", "referral_id", referrals),
        ]
        for table, column, values in deletes:
            if values:
                await conn.execute(f"DELETE FROM {self.q(table)} WHERE {column} = any($1::text[])", values)
        await copy_rows(conn, self.schema, p.rows)
        if p.count_delta:
            counts = self.q("outcome_counts")
            await conn.executemany(
                f"""INSERT INTO {counts} (period_kind, period_start, area_kind, area, call_category,
                                           behavioral_health, metric, value)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (period_kind, period_start, area_kind, area, call_category, behavioral_health,
                                 metric)
                    DO UPDATE SET value = {counts}.value + EXCLUDED.value""",
                [(*cell, v) for cell, v in p.count_delta.items()],
            )
            await conn.execute(f"DELETE FROM {counts} WHERE value = 0")


async def copy_rows(conn: Connection, schema: str, rows: Rows) -> None:
    """COPY every table's rows (tables absent from ``rows`` are left alone)."""
    for table in T.ALL_TABLES:
        batch = rows.get(table.name)
        if batch:
            await conn.copy_records_to_table(
                table.name,
                schema_name=schema,
                columns=list(table.columns),
                records=table_records(table, batch.values()),
            )


async def snapshot(
    conn: Executor, schema: str, tables: Sequence[T.Table] = T.ALL_TABLES
) -> dict[str, list[tuple]]:
    """Every row of every table, ordered by primary key (for comparing schemas)."""
    out = {}
    for t in tables:
        cols = ", ".join(f'"{c}"' for c in t.columns)
        order = ", ".join(f'"{c}"' for c in t.key)
        rows = await conn.fetch(f'SELECT {cols} FROM "{check_schema_name(schema)}".{t.name} ORDER BY {order}')
        out[t.name] = [tuple(r.values()) for r in rows]
    return out
