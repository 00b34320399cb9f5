"""The PostgreSQL shell of the projections: migrations, effectively-once batch apply,
stored positions, and bulk loading.

Effectively once: :meth:`ReadModelStore.apply_batch` runs ONE transaction per batch that

1. serializes with every other projector on this schema (advisory transaction lock), so
   two workers never recompute the same component concurrently;
2. skips records below the stored position of their partition (already applied, e.g.
   by the previous owner before a rebalance) and facts whose event id is already stored;
3. stores the new facts (COPY) and folds them incrementally (:mod:`projections.livefold`):
   answers the fold's few requests (the new facts' incidents, referrals, consents, the
   clusters, contacts and service facts of their persons — set-based queries over primary
   keys and the ``keys`` GIN index), deletes the keys it replaces, COPYs the rows it writes,
   adds the outcome-count deltas (one ``executemany``). A batch holding an identity link /
   unlink or an erasure instead re-derives the components it touches (loads them, deletes
   the rows they own, COPYs the recomputed ones): its cost grows with the component, the
   others' with the batch;
4. records the next offset of every partition in the batch.

Rows and positions commit together, so a crash or a rebalance at any point either keeps
the whole batch or none of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from hub.kernel.crypto import Keyring, KeyStore
from hub.kernel.db import Connection, Executor, MigrationSet, check_schema_name
from hub.kernel.errors import PermanentError
from hub.kernel.metrics import PROJECTION_EVENTS, PROJECTION_TX_LATENCY
from hub.kernel.vocabulary import VocabularySet
from projections import tables as T
from projections.config import FoldConfig
from projections.counts import Cell, period_start
from projections.facts import Fact, make_fact
from projections.fold import Plan, Rows, derive, plan
from projections.incidents import sealed_kids
from projections.livefold import (
    CONSENT_TYPES,
    SERVICE_TYPES,
    Clusters,
    ConsentFacts,
    Contacts,
    Delta,
    EntryIncidents,
    IncidentEntries,
    IncidentFacts,
    IncidentRows,
    KeyringFor,
    PersonFacts,
    ReferralFacts,
    Request,
    by_person,
    live_fold,
    needs_component,
)

#: the read-model tables, in the namespace's read-model schema (or a replay's fresh schema)
READ_MODEL_MIGRATIONS = MigrationSet(
    "projections", Path(__file__).resolve().parent / "migrations", "read_models"
)
_JSON_COLUMNS = {"data", "detail", "custom"}
FACT_CACHE_SIZE = 200_000
META_VOCABULARIES = "vocabularies"


class VocabularyVersionError(PermanentError, ValueError):
    """A vocabulary's content changed but its version did not: the rows it derived could
    not be told apart from the new ones, so nothing is re-derived."""


def vocabulary_meta(vocabularies: VocabularySet) -> dict[str, Any]:
    """What a schema records about the vocabularies its rows were derived with (and what
    reports state): the set's label and digest, and each vocabulary's content."""
    return {
        "label": vocabularies.label,
        "digest": vocabularies.digest,
        "vocabularies": [
            {**v.model_dump(mode="json"), "label": v.label, "digest": v.digest}
            for v in sorted(vocabularies.vocabularies, key=lambda v: v.name)
        ],
    }


def check_versions(stored: dict[str, Any] | None, current: VocabularySet) -> None:
    """Refuse a vocabulary whose ``name@version`` the schema used with other content."""
    if not stored:
        return
    before = {v["label"]: v["digest"] for v in stored.get("vocabularies", [])}
    for v in current.vocabularies:
        if v.label in before and before[v.label] != v.digest:
            raise VocabularyVersionError(
                f"vocabulary {v.name} changed but its version is still {v.version}: raise `version` in "
                "its file so reports can tell the two apart"
            )


async def read_meta(conn: Executor, schema: str, key: str = META_VOCABULARIES) -> dict[str, Any] | None:
    """A ``read_model_meta`` value (None when absent or the schema predates the table)."""
    exists = await conn.fetchval(
        """SELECT count(*) FROM information_schema.tables
           WHERE table_schema = $1 AND table_name = 'read_model_meta'""",
        schema,
    )
    if not exists:
        return None
    raw = await conn.fetchval(
        f'SELECT value::text FROM "{check_schema_name(schema)}".read_model_meta WHERE key = $1', key
    )
    return None if raw is None else json.loads(raw)


async def write_meta(
    conn: Executor, schema: str, value: dict[str, Any], key: str = META_VOCABULARIES
) -> None:
    """Set a ``read_model_meta`` value (replacing the key's; no constraint needed, so it also
    works while a replay loads with the schema's keys dropped)."""
    table = f'"{check_schema_name(schema)}".read_model_meta'
    await conn.execute(f"DELETE FROM {table} WHERE key = $1", key)
    await conn.execute(
        f"INSERT INTO {table} (key, value) VALUES ($1, $2::jsonb)", key, json.dumps(value, sort_keys=True)
    )


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
            "data": json.dumps(f.data),  # jsonb: key order is not kept, so not sorted here
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


def stored_row(record: asyncpg.Record) -> dict[str, Any]:
    """A read-model row as the folds produce it: jsonb columns (:data:`_JSON_COLUMNS`), which
    asyncpg returns as JSON text, decoded — so a stored row written back (a patched incident
    row) is encoded once by :func:`table_records`, not again as a JSON string."""
    row = dict(record)
    for column in _JSON_COLUMNS.intersection(row):
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def table_records(table: T.Table, rows: Iterable[dict[str, Any]]) -> list[tuple]:
    """COPY records of ``rows`` in the table's column order (jsonb columns as JSON text)."""
    json_at = [i for i, c in enumerate(table.columns) if c in _JSON_COLUMNS]
    if not json_at:
        return [table.record(row) for row in rows]
    out = []
    for row in rows:
        record = list(table.record(row))
        for i in json_at:
            record[i] = json.dumps(record[i])
        out.append(tuple(record))
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

    def __init__(
        self, pool: asyncpg.Pool, schema: str, cfg: FoldConfig, keys: KeyStore | None = None
    ) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)
        self.cfg = cfg
        #: opens the sealed disposition texts of the facts a batch derives (to classify
        #: them; never stored); None: they count as unknown words
        self.keys = keys
        self._cache: dict[str, Fact] = {}  # facts are immutable: parse each once per process

    def _remember(self, fact: Fact) -> None:
        if len(self._cache) >= FACT_CACHE_SIZE:
            for key in list(self._cache)[: FACT_CACHE_SIZE // 4]:  # drop the oldest quarter
                del self._cache[key]
        self._cache[fact.event_id] = fact

    def q(self, table: str) -> str:
        return f'"{self.schema}".{table}'

    async def keyring(self, facts: Iterable[Fact]) -> Keyring | None:
        """The snapshot opening the sealed words of ``facts`` (one key-store call; None when
        there are none or no key store)."""
        kids = sealed_kids((f.event_type, f.data) for f in facts)
        if not kids or self.keys is None:
            return None
        return await self.keys.resolve_ids(kids)

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

    async def reclassify(self) -> bool:
        """Bring the rows in line with the configured vocabularies: when the schema's rows
        were derived with another set (or before sets were recorded), re-derive every row
        from the stored facts in one transaction — the live re-projection; the log is not
        re-read. Returns whether it re-derived. Raises :class:`VocabularyVersionError` for a
        vocabulary changed under the same version."""
        current = self.cfg.vocabularies
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('hub.projections'), hashtext($1))", self.schema
            )
            stored = await read_meta(conn, self.schema)
            check_versions(stored, current)
            if stored is not None and stored.get("digest") == current.digest:
                return False
            has_facts = await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {self.q('facts')})")
            if has_facts:
                facts = [fact_from_row(r) for r in await conn.fetch(f"SELECT * FROM {self.q('facts')}")]
                rows = derive(facts, self.cfg, await self.keyring(facts))
                for table in (*T.DERIVED, T.OUTCOME_COUNTS):
                    await conn.execute(f"DELETE FROM {self.q(table.name)}")
                await copy_rows(conn, self.schema, rows)
            await write_meta(conn, self.schema, vocabulary_meta(current))
            return bool(has_facts)

    async def _apply_facts(self, conn: Connection, new: list[Fact]) -> set[date]:
        await conn.copy_records_to_table(
            "facts",
            schema_name=self.schema,
            columns=list(T.FACTS.columns),
            records=[fact_record(f) for f in new],
        )
        for f in new:
            self._remember(f)
        if needs_component(new):
            return await self._apply_components(conn, new)
        fold = live_fold(new, self.cfg)
        try:
            requests = next(fold)
            while True:
                requests = fold.send([await self._answer(conn, r) for r in requests])
        except StopIteration as done:
            d: Delta = done.value
        await self._write(conn, d)
        return {
            period_start("month", r["received_at"], self.cfg)
            for r in [*d.incidents_before, *d.incidents_after]
            if r["received_at"] is not None
        }

    async def _facts_where(self, conn: Connection, where: str, *args: Any) -> list[Fact]:
        """The facts matching ``where`` (parsed once per process: cached by event id)."""
        ids = await conn.fetch(f"SELECT event_id FROM {self.q('facts')} WHERE {where}", *args)
        found = {i: cached for r in ids if (cached := self._cache.get(i := r["event_id"])) is not None}
        missing = [r["event_id"] for r in ids if r["event_id"] not in found]
        if missing:
            for r in await conn.fetch(
                f"SELECT * FROM {self.q('facts')} WHERE event_id = any($1::text[])", missing
            ):
                fact = fact_from_row(r)
                found[fact.event_id] = fact
                self._remember(fact)
        return list(found.values())

    async def _answer(self, conn: Connection, r: Request) -> Any:
        """The answer to one :mod:`projections.livefold` request from this schema (in the
        batch's transaction, so the batch's facts are visible)."""
        if isinstance(r, KeyringFor):
            return await self.keyring(r.facts)
        if isinstance(r, PersonFacts):
            keys = sorted({"p:" + m for _, ms in r.members for m in ms})
            if not keys:
                return {}
            facts = await self._facts_where(conn, "keys && $1::text[] AND event_type = any($2::text[])",
                                            keys, list(SERVICE_TYPES))
            return {c: [f for f in facts if by_person(f) & ms] for c, ms in r.members}
        named: frozenset[str] = (r.persons if isinstance(r, Clusters | Contacts)
                                 else r.event_ids if isinstance(r, EntryIncidents) else r.ids)
        ids = sorted(named)
        if not ids:
            return {}
        if isinstance(r, Clusters):
            rows = await conn.fetch(
                f"""SELECT p.pseudonym, p.canonical, array_agg(m.pseudonym) AS members
                      FROM {self.q("person_clusters")} p
                      JOIN {self.q("person_clusters")} m ON m.canonical = p.canonical
                     WHERE p.pseudonym = any($1::text[]) GROUP BY p.pseudonym, p.canonical""",
                ids,
            )
            return {row["pseudonym"]: (row["canonical"], frozenset(row["members"])) for row in rows}
        if isinstance(r, IncidentFacts | ReferralFacts):
            prefix, attr = ("i:", "incident_id") if isinstance(r, IncidentFacts) else ("r:", "referral_id")
            grouped: dict[str, list[Fact]] = {}
            for f in await self._facts_where(conn, "keys && $1::text[]", [prefix + i for i in ids]):
                owner = getattr(f, attr)
                if owner in r.ids:
                    grouped.setdefault(owner, []).append(f)
            return grouped
        if isinstance(r, ConsentFacts):
            consents: dict[str, list[Fact]] = {}
            for f in await self._facts_where(conn, "keys && $1::text[] AND event_type = any($2::text[])",
                                             ["p:" + p for p in sorted(r.persons)], list(CONSENT_TYPES)):
                cid = f.data.get("consent_id")
                if cid in r.ids:
                    consents.setdefault(cid, []).append(f)
            return consents
        if isinstance(r, IncidentRows):
            rows = await conn.fetch(
                f"SELECT * FROM {self.q('incident_summary')} WHERE incident_id = any($1::text[])", ids
            )
            return {row["incident_id"]: stored_row(row) for row in rows}
        if isinstance(r, IncidentEntries):
            placed: dict[str, list[tuple[str, Any]]] = {}
            for row in await conn.fetch(
                f"""SELECT incident_id, event_id, at FROM {self.q("timeline_entries")}
                     WHERE incident_id = any($1::text[])""",
                ids,
            ):
                placed.setdefault(row["incident_id"], []).append((row["event_id"], row["at"]))
            return placed
        if isinstance(r, EntryIncidents):
            rows = await conn.fetch(
                f"""SELECT event_id, incident_id FROM {self.q("timeline_entries")}
                     WHERE event_id = any($1::text[])""",
                ids,
            )
            return {row["event_id"]: row["incident_id"] for row in rows}
        assert isinstance(r, Contacts)
        rows = await conn.fetch(  # arrays: one row per person, however many contacts
            f"""SELECT person, array_agg(incident_id) AS incidents, array_agg(contact_at) AS times
                  FROM {self.q("person_contacts")} WHERE person = any($1::text[]) GROUP BY person""",
            ids,
        )
        return {row["person"]: dict(zip(row["incidents"], row["times"], strict=True)) for row in rows}

    async def _write(self, conn: Connection, d: Delta) -> None:
        """Write a :class:`projections.livefold.Delta`: delete the keys it deletes and
        replaces, COPY the rows it writes, add the count deltas."""
        for table in T.DERIVED:
            keys = sorted(d.deletes.get(table.name, set())
                          | (d.upserts.get(table.name, {}).keys() - d.fresh.get(table.name, set())))
            if not keys:
                continue
            if len(table.key) == 1:
                await conn.execute(
                    f"DELETE FROM {self.q(table.name)} WHERE {table.key[0]} = any($1::text[])",
                    [k[0] for k in keys],
                )
            else:  # each key column by `= any` too, so the primary key's index finds the rows
                cols = ", ".join(table.key)
                args = [f"${n + 1}::text[]" for n in range(len(table.key))]
                each = " AND ".join(f"{c} = any({a})" for c, a in zip(table.key, args, strict=True))
                await conn.execute(
                    f"""DELETE FROM {self.q(table.name)}
                         WHERE {each} AND ({cols}) IN (SELECT * FROM unnest({", ".join(args)}))""",
                    *([k[n] for k in keys] for n in range(len(table.key))),
                )
        await copy_rows(conn, self.schema, {t: rows for t, rows in d.upserts.items() if rows})
        await self._add_counts(conn, d.count_delta)

    async def _apply_components(self, conn: Connection, new: list[Fact]) -> set[date]:
        """Re-derive the components the new facts touch (identity links / unlinks,
        erasures: :func:`projections.livefold.needs_component`)."""
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
            stored_row(r)
            for r in await conn.fetch(
                f"DELETE FROM {self.q('incident_summary')} WHERE incident_id = any($1::text[]) RETURNING *",
                incidents,
            )
        ]
        p = plan(facts, keys, old, self.cfg, await self.keyring(facts))
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
        await self._add_counts(conn, p.count_delta)

    async def _add_counts(self, conn: Connection, count_delta: dict[Cell, int]) -> None:
        if count_delta:
            counts = self.q("outcome_counts")
            await conn.executemany(
                f"""INSERT INTO {counts} (period_kind, period_start, area_kind, area, call_category,
                                           behavioral_health, metric, value)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (period_kind, period_start, area_kind, area, call_category, behavioral_health,
                                 metric)
                    DO UPDATE SET value = {counts}.value + EXCLUDED.value""",
                [(*cell, v) for cell, v in count_delta.items()],
            )
            if any(v < 0 for v in count_delta.values()):  # only a decrease can leave a zero
                await conn.execute(f"DELETE FROM {counts} WHERE value = 0")


async def copy_rows(conn: Connection, schema: str, rows: Rows) -> None:
    """COPY every table's rows (tables absent from ``rows`` are left alone)."""
    records = {t.name: table_records(t, rows[t.name].values()) for t in T.ALL_TABLES if rows.get(t.name)}
    await copy_records(conn, schema, records)


async def copy_records(conn: Connection, schema: str, records: dict[str, list[tuple]]) -> None:
    """COPY records already in each table's column order (:func:`table_records`), table by
    table in :data:`projections.tables.ALL_TABLES` order."""
    for table in T.ALL_TABLES:
        batch = records.get(table.name)
        if batch:
            await conn.copy_records_to_table(
                table.name, schema_name=schema, columns=list(table.columns), records=batch
            )


@asynccontextmanager
async def load_without_indexes(conn: Connection, schema: str) -> AsyncIterator[None]:
    """Bulk load into ``schema``'s tables with their primary keys, unique constraints and
    indexes dropped, rebuilt (by sorting, not insert by insert) when the block ends, then
    ``ANALYZE``. Use inside a transaction, as the tables' owner: when the block fails the
    transaction rolls back, indexes included. A duplicate the load let in fails the rebuild
    of its primary key (``asyncpg.UniqueViolationError``) instead of being stored twice."""
    check_schema_name(schema)
    constraints = await conn.fetch(
        """SELECT c.conname, t.relname, pg_get_constraintdef(c.oid) AS def
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = $1 AND c.contype IN ('p', 'u') ORDER BY t.relname, c.conname""",
        schema,
    )
    indexes = await conn.fetch(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = $1 AND NOT EXISTS (
                  SELECT 1 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                   WHERE n.nspname = $1 AND c.conname = i.indexname)
            ORDER BY i.indexname""",
        schema,
    )
    tables = sorted({r["relname"] for r in constraints})
    for r in indexes:
        await conn.execute(f'DROP INDEX "{schema}"."{r["indexname"]}"')
    for r in constraints:
        await conn.execute(f'ALTER TABLE "{schema}"."{r["relname"]}" DROP CONSTRAINT "{r["conname"]}"')
    yield
    for r in constraints:
        await conn.execute(
            f'ALTER TABLE "{schema}"."{r["relname"]}" ADD CONSTRAINT "{r["conname"]}" {r["def"]}'
        )
    for r in indexes:
        await conn.execute(r["indexdef"])
    for table in tables:
        await conn.execute(f'ANALYZE "{schema}"."{table}"')


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
