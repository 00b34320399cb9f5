"""The PostgreSQL shell of the projections: migrations, effectively-once batch apply,
stored positions, and bulk loading.

Effectively once: :meth:`ReadModelStore.apply_batch` runs ONE transaction per batch that

1. serializes with every other projector on this schema (advisory transaction lock), so
   two workers never recompute the same component concurrently;
2. skips records below the stored position of their partition (already applied, e.g.
   by the previous owner before a rebalance) and facts whose event id is already stored;
3. stores the new facts (COPY) and folds them incrementally (:mod:`projections.livefold`):
   answers the fold's few requests — each stage's requests in ONE statement (one
   ``ARRAY(...)`` column per request: set-based queries over primary keys, the ``keys`` GIN
   index and ``person_contacts (person, contact_at)``), facts parsed once per process — and
   writes the delta in ONE statement (:func:`write_statement`: per table a DELETE of the keys
   it drops and an upsert of the rows it writes, the outcome-count deltas, the positions).
   A batch holding an identity link / unlink or an erasure instead re-derives the
   components it touches (loads them, deletes the rows they own, COPYs the recomputed
   ones): its cost grows with the component, the others' with the batch;
4. records the next offset of every partition in the batch.

A batch is about eight round trips whatever its size: ``BEGIN`` + lock, positions + known
facts, the facts' COPY, one per fold stage that asks for something, the write, ``COMMIT``.
Rows and positions commit together, so a crash or a rebalance at any point either keeps
the whole batch or none of it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

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
    ContactRange,
    ContactsAt,
    Delta,
    EntryIncidents,
    IncidentEntries,
    IncidentFacts,
    IncidentRows,
    KeyringFor,
    PersonFacts,
    ReferralFacts,
    Request,
    Summaries,
    WindowCounts,
    by_person,
    live_fold,
    needs_component,
)

#: the read-model tables, in the namespace's read-model schema (or a replay's fresh schema)
READ_MODEL_MIGRATIONS = MigrationSet(
    "projections", Path(__file__).resolve().parent / "migrations", "read_models"
)
FACT_CACHE_SIZE = 200_000
log = logging.getLogger(__name__)
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


def stored_row(record: asyncpg.Record | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A read-model row as the folds produce it: jsonb columns (:data:`tables.JSON_COLUMNS`), which
    asyncpg returns as JSON text, decoded — so a stored row written back (a patched incident
    row) is encoded once, not again as a JSON string."""
    row = dict(record)
    for column in T.JSON_COLUMNS.intersection(row):
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    return row


def _json_value(v: Any) -> str:
    if isinstance(v, datetime | date):
        return v.isoformat()  # aware datetimes: the offset travels with the time
    raise TypeError(f"not a read-model value: {type(v).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_value)


def rows_json(table: T.Table, rows: Iterable[dict[str, Any]]) -> str:
    """``rows`` as one JSON array of objects with the table's columns (for
    ``jsonb_populate_recordset``: times as ISO 8601 with their offset, jsonb columns as JSON)."""
    return _dumps([{c: row[c] for c in table.columns} for row in rows])


def table_records(table: T.Table, rows: Iterable[dict[str, Any]]) -> list[tuple]:
    """COPY records of ``rows`` in the table's column order (jsonb columns as JSON text)."""
    json_at = [i for i, c in enumerate(table.columns) if c in T.JSON_COLUMNS]
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
    #: the stored next offset of the batch's topics' partitions after it (those it names)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


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
        self._write_statement: str | None = None

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

    async def apply_batch(self, batch: Sequence[Consumed], conn: Connection | None = None) -> BatchResult:
        """Apply one batch effectively once (see module docstring), on ``conn`` (a connection
        the caller holds, e.g. the projector's: its statements stay prepared) or on one from
        the pool."""
        result = BatchResult(records=len(batch))
        if not batch:
            return result
        if conn is None:
            async with self.pool.acquire() as held:
                return await self.apply_batch(batch, held)
        started = time.perf_counter()
        async with self._locked(conn):
            facts: dict[str, Fact] = {}
            for c in batch:
                if c.fact is not None:
                    facts.setdefault(c.fact.event_id, c.fact)
            row = await conn.fetchrow(  # the stored positions and which facts are stored already
                f"""SELECT ARRAY(SELECT ROW(topic, "partition", next_offset)
                                   FROM {self.q("projection_positions")}
                                  WHERE topic = any($1::text[])) AS positions,
                           ARRAY(SELECT event_id FROM {self.q("facts")}
                                  WHERE event_id = any($2::text[])) AS known""",
                sorted({c.topic for c in batch}), list(facts),
            )
            assert row is not None
            stored = {(t, p): o for t, p, o in row["positions"]}
            fresh = [c for c in batch if c.offset >= stored.get((c.topic, c.partition), 0)]
            result.skipped_positions = len(batch) - len(fresh)
            facts = {}
            for c in fresh:
                if c.fact is not None:
                    facts.setdefault(c.fact.event_id, c.fact)
            known = set(row["known"])
            new = [f for eid, f in facts.items() if eid not in known]
            result.duplicate_facts = sum(1 for c in fresh if c.fact) - len(new)
            result.new_facts = len(new)
            ends: dict[tuple[str, int], int] = {}
            for c in fresh:
                ends[(c.topic, c.partition)] = max(ends.get((c.topic, c.partition), 0), c.offset + 1)
            if new:
                result.months = await self._apply_facts(conn, new, ends)
            elif ends:
                await self._write(conn, Delta(), ends)
            result.positions = {**stored, **ends}
        PROJECTION_TX_LATENCY.labels("read_models").observe(time.perf_counter() - started)
        PROJECTION_EVENTS.labels("read_models").inc(result.new_facts)
        return result

    async def prepare(self, conn: Connection) -> None:
        """Prepare the write statement on ``conn`` (the largest statement of a batch): a
        connection held for batches pays it before the first one."""
        async with conn.transaction():
            await conn.prepare(self._write_sql())

    @asynccontextmanager
    async def _locked(self, conn: Connection) -> AsyncIterator[None]:
        """A transaction holding the schema's projector lock: ``BEGIN`` and the lock in one
        round trip (a simple query of two statements), ``COMMIT`` or ``ROLLBACK`` at the end.
        It serializes with every other projector on this schema, so two workers never
        recompute the same rows concurrently; the statements after it see what they committed."""
        await conn.execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('hub.projections'), "
            f"hashtext('{self.schema}'))"  # a checked schema name: no quote in it
        )
        try:
            yield
        except BaseException:
            if not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except Exception as exc:  # the connection broke: the pool discards it
                    log.info("rollback failed: %s", type(exc).__name__)
            raise
        await conn.execute("COMMIT")

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

    async def _apply_facts(
        self, conn: Connection, new: list[Fact], ends: dict[tuple[str, int], int]
    ) -> set[date]:
        await conn.copy_records_to_table(
            "facts",
            schema_name=self.schema,
            columns=list(T.FACTS.columns),
            records=[fact_record(f) for f in new],
        )
        for f in new:
            self._remember(f)
        if needs_component(new):
            months = await self._apply_components(conn, new)
            await self._write(conn, Delta(), ends)
            return months
        fold = live_fold(new, self.cfg)
        try:
            requests = next(fold)
            while True:
                requests = fold.send(await self._answer(conn, requests))
        except StopIteration as done:
            d: Delta = done.value
        await self._write(conn, d, ends)
        return {
            period_start("month", r["received_at"], self.cfg)
            for r in [*d.incidents_before, *d.incidents_after]
            if r["received_at"] is not None
        }

    async def _facts(self, conn: Connection, ids: Iterable[str]) -> dict[str, Fact]:
        """The facts of ``ids`` (parsed once per process: cached by event id; the others in
        one query)."""
        found: dict[str, Fact] = {}
        missing = []
        for i in ids:
            cached = self._cache.get(i)
            if cached is None:
                missing.append(i)
            else:
                found[i] = cached
        if missing:
            for r in await conn.fetch(
                f"SELECT * FROM {self.q('facts')} WHERE event_id = any($1::text[])", sorted(set(missing))
            ):
                fact = fact_from_row(r)
                found[fact.event_id] = fact
                self._remember(fact)
        return found

    async def _answer(self, conn: Connection, requests: Sequence[Request]) -> list[Any]:
        """The answers to one stage of :mod:`projections.livefold` requests from this schema
        (in the batch's transaction, so the batch's facts are visible): every request's
        query is one ``ARRAY(...)`` column of ONE statement; facts are then taken from the
        cache, the uncached ones in one more query."""
        parts = [None if isinstance(r, KeyringFor) else self._part(r) for r in requests]
        asked = [n for n, p in enumerate(parts) if p is not None and p.sql]
        values: dict[int, list[Any]] = {}
        if asked:
            columns: list[str] = []
            args: list[Any] = []
            for n in asked:
                p = parts[n]
                assert p is not None
                columns.append(f"ARRAY({_renumber(p.sql, len(args))}) AS a{n}")
                args.extend(p.args)
            row = await conn.fetchrow("SELECT " + ", ".join(columns), *args)
            assert row is not None
            values = {n: list(row[f"a{n}"]) for n in asked}
        ids = {i for n in asked if (p := parts[n]) is not None and p.facts for i in values[n]}
        facts = await self._facts(conn, ids) if ids else {}
        out: list[Any] = []
        for n, (r, p) in enumerate(zip(requests, parts, strict=True)):
            if p is None:
                assert isinstance(r, KeyringFor)
                out.append(await self.keyring(r.facts))
            else:
                got = values.get(n, [])
                out.append(p.decode([facts[i] for i in got] if p.facts else got))
        return out

    def _part(self, r: Request) -> _Part:
        """The query answering ``r`` (its rows: one value each — a ROW, a table row or an event
        id) and how its values become the answer; ``sql`` is empty when ``r`` asks for nothing."""
        q = self.q
        facts_with = f"SELECT event_id FROM {q('facts')} WHERE keys && $1::text[] AND"
        if isinstance(r, PersonFacts):
            pkeys = sorted({"p:" + m for _, ms in r.members for m in ms})
            members = r.members
            return _Part(f"{facts_with} event_type = any($2::text[])" if pkeys else "",
                         (pkeys, list(SERVICE_TYPES)), True,
                         lambda fs: {c: [f for f in fs if by_person(f) & ms] for c, ms in members})
        if isinstance(r, IncidentFacts | ReferralFacts):
            prefix, attr = ("i:", "incident_id") if isinstance(r, IncidentFacts) else ("r:", "referral_id")
            ids = sorted(r.ids)
            return _Part(f"{facts_with} {attr} = any($2::text[])" if ids else "",
                         ([prefix + i for i in ids], ids), True,
                         lambda fs: _group(fs, lambda f: getattr(f, attr), r.ids))
        if isinstance(r, ConsentFacts):
            return _Part(f"{facts_with} event_type = any($2::text[])" if r.ids else "",
                         (["p:" + p for p in sorted(r.persons)], list(CONSENT_TYPES)), True,
                         lambda fs: _group(fs, lambda f: f.data.get("consent_id"), r.ids))
        if isinstance(r, Clusters):
            pc = q("person_clusters")
            return _Part(f"""SELECT ROW(p.pseudonym, p.canonical,
                                      ARRAY(SELECT m.pseudonym FROM {pc} m WHERE m.canonical = p.canonical))
                               FROM {pc} p WHERE p.pseudonym = any($1::text[])""" if r.persons else "",
                         (sorted(r.persons),), False,
                         lambda rows: {p: (c, frozenset(ms)) for p, c, ms in rows})
        if isinstance(r, IncidentRows | Summaries):
            table, column, keys = ((T.INCIDENT_SUMMARY, "incident_id", r.ids) if isinstance(r, IncidentRows)
                                   else (T.PERSON_SUMMARY, "person", r.persons))
            # an anonymous ROW: its type does not change when the schema is re-created
            listed = ", ".join(f'"{c}"' for c in table.columns)
            return _Part(f"SELECT ROW({listed}) FROM {q(table.name)} WHERE {column} = any($1::text[])"
                         if keys else "", (sorted(keys),), False,
                         lambda rows: {r[column]: r for r in (stored_row(zip(table.columns, v, strict=True))
                                                              for v in rows)})
        if isinstance(r, IncidentEntries):
            return _Part(f"""SELECT ROW(incident_id, event_id, at) FROM {q("timeline_entries")}
                              WHERE incident_id = any($1::text[])""" if r.ids else "",
                         (sorted(r.ids),), False,
                         lambda rows: _group(rows, lambda e: e[0], r.ids, lambda e: e[1:]))
        if isinstance(r, EntryIncidents):
            return _Part(f"""SELECT ROW(event_id, incident_id) FROM {q("timeline_entries")}
                              WHERE event_id = any($1::text[])""" if r.event_ids else "",
                         (sorted(r.event_ids),), False, dict)
        if isinstance(r, ContactsAt):
            return _Part(f"""SELECT ROW(person, incident_id, contact_at) FROM {q("person_contacts")}
                              WHERE person = any($1::text[]) AND incident_id = any($2::text[])"""
                         if r.persons and r.incidents else "",
                         (sorted(r.persons), sorted(r.incidents)), False,
                         lambda rows: {p: dict(pairs) for p, pairs in
                                       _group(rows, lambda c: c[0], r.persons, lambda c: c[1:]).items()})
        if isinstance(r, ContactRange):
            items = r.items

            def in_range(rows: list[Any]) -> dict[Any, dict[str, Any]]:
                out: dict[Any, dict[str, Any]] = {item: {} for item in items}
                for n, incident, at in rows:
                    out[items[n - 1]][incident] = at
                return out
            return _Part(f"""SELECT ROW(u.n, c.incident_id, c.contact_at)
                               FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY
                                    AS u(person, lo, hi, n)
                               JOIN {q("person_contacts")} c ON c.person = u.person
                                AND c.contact_at >= coalesce(u.lo, '-infinity')
                                AND c.contact_at <= coalesce(u.hi, 'infinity')""" if items else "",
                         tuple(list(col) for col in zip(*items, strict=True)), False, in_range)
        assert isinstance(r, WindowCounts)
        ends = r.items
        return _Part(f"""SELECT ROW(u.n, (SELECT count(*) FROM {q("person_contacts")} c
                                          WHERE c.person = u.person
                                            AND c.contact_at BETWEEN u.e - $3::interval AND u.e))
                           FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS u(person, e, n)"""
                     if ends else "", ([p for p, _ in ends], [t for _, t in ends], r.window), False,
                     lambda rows: {ends[n - 1]: count for n, count in rows})

    async def _write(self, conn: Connection, d: Delta, ends: dict[tuple[str, int], int]) -> None:
        """Write a :class:`projections.livefold.Delta` and the batch's next offsets in ONE
        statement (data-modifying CTEs, each fed by one array parameter): per table, delete
        the keys it deletes and upsert the rows it writes (never both for one key); add the
        count deltas, removing the cells they bring to zero; store the positions."""
        args: list[Any] = []
        for table in T.DERIVED:
            keys = sorted(d.deletes.get(table.name, ()))
            args.extend([k[n] for k in keys] for n in range(len(table.key)))
            args.append(rows_json(table, d.upserts.get(table.name, {}).values()))
        cells = T.OUTCOME_COUNTS.columns
        args.append(_dumps([dict(zip(cells, (*cell, v), strict=True)) for cell, v in d.count_delta.items()]))
        args.extend([[t for t, _ in ends], [p for _, p in ends], list(ends.values())])
        await conn.execute(self._write_sql(), *args)

    def _write_sql(self) -> str:
        if self._write_statement is None:
            self._write_statement = write_statement(self.schema)
        return self._write_statement

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


def _group(values: Iterable[Any], owner: Callable[[Any], Any], wanted: frozenset[str],
           value: Callable[[Any], Any] = lambda v: v) -> dict[str, list[Any]]:
    """``value(v)`` of each of ``values`` grouped by ``owner(v)``, for the owners in ``wanted``."""
    out: dict[str, list[Any]] = {}
    for v in values:
        o = owner(v)
        if o in wanted:
            out.setdefault(o, []).append(value(v))
    return out


class _Part(NamedTuple):
    """One request's share of a stage's statement (:meth:`ReadModelStore._answer`)."""

    sql: str  # rows of one value each; "" when the request asks for nothing
    args: tuple[Any, ...]  # its parameters, numbered from $1
    facts: bool  # the values are event ids, decoded as the facts they name
    decode: Callable[[list[Any]], Any]


_PARAM = re.compile(r"\$(\d+)")


def _renumber(sql: str, base: int) -> str:
    """``sql`` with its parameters ``$1..$n`` moved to ``$base+1..$base+n``."""
    return _PARAM.sub(lambda m: f"${int(m.group(1)) + base}", sql)


def write_statement(schema: str) -> str:
    """The one statement :meth:`ReadModelStore._write` runs: per derived table a DELETE of
    the keys in its key-column arrays and an upsert (``INSERT … ON CONFLICT DO UPDATE``) of
    the rows in a JSON array (``jsonb_populate_recordset`` into the table's row type, which
    the server resolves when it plans: no client-side type that a re-created schema would
    leave stale); the count deltas (cells brought to zero deleted, the others added to); the
    positions (each partition's greatest). The same text for every batch (an empty array
    changes nothing), so it is prepared once per connection."""
    s = check_schema_name(schema)
    n = 0

    def param(cast: str) -> str:
        nonlocal n
        n += 1
        return f"${n}::{cast}"

    def cols(names: Iterable[str], prefix: str = "") -> str:
        return ", ".join(f'{prefix}"{c}"' for c in names)

    def same(a: str, b: str, names: Iterable[str]) -> str:
        return " AND ".join(f'{a}."{c}" = {b}."{c}"' for c in names)

    ctes = []
    for i, t in enumerate(T.DERIVED):
        table = f'"{s}".{t.name}'
        keys = [param("text[]") for _ in t.key]
        if len(t.key) == 1:
            where = f'"{t.key[0]}" = any({keys[0]})'
        else:  # each key column by `= any` too, so the primary key's index finds the rows
            each = " AND ".join(f'"{c}" = any({k})' for c, k in zip(t.key, keys, strict=True))
            where = f"{each} AND ({cols(t.key)}) IN (SELECT * FROM unnest({', '.join(keys)}))"
        ctes.append(f"d{i} AS (DELETE FROM {table} WHERE {where})")
        rest = [c for c in t.columns if c not in t.key]
        update = (f"DO UPDATE SET ({cols(rest)}) = ROW({cols(rest, 'EXCLUDED.')})" if rest else "DO NOTHING")
        ctes.append(f"u{i} AS (INSERT INTO {table} ({cols(t.columns)}) SELECT {cols(t.columns)} "
                    f"FROM jsonb_populate_recordset(NULL::{table}, {param('jsonb')}) "
                    f"ON CONFLICT ({cols(t.key)}) {update})")
    c = T.OUTCOME_COUNTS
    counts = f'"{s}".{c.name}'
    ctes.append(f"cd AS (SELECT d.*, coalesce(o.value, 0) + d.value AS total "
                f"FROM jsonb_populate_recordset(NULL::{counts}, {param('jsonb')}) d "
                f"LEFT JOIN {counts} o ON {same('o', 'd', c.key)})")
    ctes.append(f"cz AS (DELETE FROM {counts} o USING cd WHERE {same('o', 'cd', c.key)} AND cd.total = 0)")
    ctes.append(f"cu AS (INSERT INTO {counts} ({cols(c.columns)}) SELECT {cols(c.columns)} FROM cd "
                f"WHERE cd.total <> 0 ON CONFLICT ({cols(c.key)}) "
                f"DO UPDATE SET value = {counts}.value + EXCLUDED.value)")
    positions = f'"{s}".{T.POSITIONS.name}'
    ctes.append(f'pos AS (INSERT INTO {positions} (topic, "partition", next_offset) '
                f"SELECT * FROM unnest({param('text[]')}, {param('int[]')}, {param('bigint[]')}) "
                f'ON CONFLICT (topic, "partition") DO UPDATE '
                f"SET next_offset = greatest(EXCLUDED.next_offset, {positions}.next_offset))")
    return "WITH " + ",\n".join(ctes) + "\nSELECT 1"


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
