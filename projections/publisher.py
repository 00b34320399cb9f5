"""Publishes the de-identified, small-cell-suppressed outcome releases to the compacted
outcome topic (``<prefix>.outcomes.counts``), keyed by ``metric|period|area``.

Only *closed* months are published (:func:`projections.releases.month_closed`: over, and
``projections.release_lateness_days`` passed). For each closed month whose counts may have
changed, the whole month's table is rebuilt from ``incident_summary`` (behavioral-health
calls and calls for service per precinct, district, sector and beat, in one statement) and
suppressed as one table, protecting every cell whose change since what analysts already knew
would be small (:func:`projections.releases.month_release`).
When the table differs from the month's latest release it is a new release
(``outcome_releases``, ``<YYYY-MM>.r<seq>``, with its vocabulary and code version); only the
records that differ from what was last published are sent, and a key that no longer exists
gets a tombstone. What was sent is recorded in ``outcome_publications`` and the release in
``outcome_releases`` in the same transaction, after the broker acknowledged the records, so a
crash in between re-sends (harmless on a compacted topic) rather than loses an update. On
start the projector publishes every month's diff.

Releases are events: each release is also appended to the core schema's append-only
``release_log`` and the sealed audit topic (:func:`hub.kernel.audit.append_audit_row`) — its
id, schema, vocabulary, hub version and the digest of its records — before the release row
commits, so ``hub verify`` notices a release log that was altered and ``hub report --release``
can check the stored records against what was sealed. A crash between a ``release_log``
insert and its acknowledgement leaves the row off the topic; :meth:`OutcomePublisher.start`
appends such rows (rebuilt from the row: a copy that did arrive is identical), so the next
start of the projector repairs what ``hub verify`` would otherwise report as forged.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from hub import __version__
from hub.kernel.audit import AuditTopic, append_audit_row, records_digest, republish_missing
from hub.kernel.custom_fields import Definitions, load_definitions
from hub.kernel.db import Connection, Executor
from hub.kernel.errors import PermanentError
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import Settings
from projections import custom_metrics
from projections.areas import path_counts
from projections.population import load_areas
from projections.queries import KeyResolver, ReadModelReader
from projections.releases import (
    MonthRelease,
    month_closed,
    month_release,
    next_month,
    release_content,
    same_content,
    with_extras,
)
from projections.reporting import unmeasured_metrics
from projections.store import read_meta
from schemas.topics import outcome_topic

#: the columns a month's grouped statement always reads (what the built-in cells and the areas need)
MONTH_COLUMNS = ("precinct", "district", "sector", "beat", "behavioral_health", "outcome", "referral_made",
                 "connected_to_services", "co_responder", "call_category")


async def month_rows(conn: Executor, schema: str, tz: str, months: Iterable[date] | None,
                     extra_columns: Iterable[str] = ()) -> dict[date, list[dict[str, Any]]]:
    """Incident rows of every kind per month (agency time), grouped by :data:`MONTH_COLUMNS`
    and ``extra_columns`` (what the county metrics read: :func:`projections.custom_metrics.row_columns`)
    with their number ``n``: one statement over ``incident_summary``, so that every grain of a
    month's table — and its county cells — count the same calls
    (:func:`projections.areas.path_counts`, :func:`projections.custom_metrics.extension`)."""
    months = None if months is None else sorted(set(months))
    columns = ", ".join(dict.fromkeys((*MONTH_COLUMNS, *extra_columns)))
    rows = await conn.fetch(
        f"""SELECT date_trunc('month', received_at AT TIME ZONE $1)::date AS month, {columns},
                   true AS received_at, count(*)::int AS n
            FROM "{schema}".incident_summary
            WHERE received_at IS NOT NULL AND call_category IS NOT NULL
              AND ($2::date[] IS NULL
                   OR date_trunc('month', received_at AT TIME ZONE $1)::date = any($2::date[]))
            GROUP BY 1, {columns}""",
        tz, months,
    )
    grouped: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[r["month"]].append(dict(r))
    return dict(grouped)


async def month_vocabularies(conn: Executor, schema: str, tz: str) -> dict[date, set[str | None]]:
    """The vocabularies (labels) that classified each month's behavioral-health calls."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE $1)::date AS month, vocabulary
            FROM "{schema}".incident_summary WHERE behavioral_health AND received_at IS NOT NULL""",
        tz,
    )
    out: dict[date, set[str | None]] = defaultdict(set)
    for r in rows:
        out[r["month"]].add(r["vocabulary"])
    return out


async def latest_releases(conn: Executor, schema: str, months: Iterable[date] | None
                          ) -> dict[date, asyncpg.Record]:
    """The latest release of each month (``seq``; ``records``, ``extras``, ``known`` as JSON text)."""
    scope = None if months is None else sorted(set(months))
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (period_start) period_start, seq, records::text AS records,
                   extras::text AS extras, known::text AS known
            FROM "{schema}".outcome_releases
            WHERE $1::date[] IS NULL OR period_start = any($1::date[])
            ORDER BY period_start, seq DESC""",
        scope,
    )
    return {r["period_start"]: r for r in rows}


class DefinitionsVersionError(PermanentError, ValueError):
    """The county's definitions changed but kept their version: releases could not tell the
    two apart, so nothing is released."""


def check_definitions_version(released: dict | None, current: Definitions) -> None:
    """Refuse definitions whose ``name@version`` an earlier release stated with other content."""
    if released and released.get("definitions") == current.label and released.get("digest") != current.digest:
        raise DefinitionsVersionError(
            f"the custom definitions {current.path} changed but their version is still {current.version}: "
            "raise `version` so releases can tell the two apart"
        )


class OutcomePublisher:
    """Explicit lifecycle: ``await start()``, ``await publish(months)``, ``await stop()``."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, schema: str, clients: KafkaClients,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 keys: KeyResolver | None = None) -> None:
        """``keys`` opens the people's sealed demographics for the released demographics
        table (None: every call counts as not reported)."""
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.clients = clients
        self.pool = pool
        self.schema = schema
        self.topic = outcome_topic(settings.kafka.topic_prefix)
        self._producer: AIOKafkaProducer | None = None
        self._audit = AuditTopic(clients, settings.kafka.topic_prefix)
        #: the county's metrics, published in every month's table (re-read at each start)
        self.custom = load_definitions(settings.custom.definitions)
        #: the county's population table (rates per 1,000 residents): read once, checked here
        self.areas = load_areas(settings.areas)

    async def start(self) -> None:
        """Start the producer, then append to the audit topic the schema's ``release_log``
        rows a crash left off it (:func:`hub.kernel.audit.republish_missing`), holding the
        schema's publication lock so that no publication writes meanwhile."""
        self._producer = self.clients.producer("outcomes")
        await self._producer.start()
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext('hub.outcomes'), hashtext($1))", self.schema)
            try:
                await republish_missing(self.pool, self._audit, self.settings.core_schema, "release_log",
                                        only=("read_model_schema", self.schema))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext('hub.outcomes'), hashtext($1))",
                                   self.schema)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._audit.stop()

    async def publish(self, months: Iterable[date] | None = None) -> int:
        """Publish the changed records of ``months`` (None = every month); returns how many
        records (including tombstones) were sent."""
        assert self._producer is not None, "start() first"
        months = None if months is None else set(months)
        if months is not None and not months:
            return 0
        # one publisher at a time per schema, reading and sending under the same lock, so
        # that a slower worker never overwrites a newer state with an older one
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hub.outcomes'), hashtext($1))",
                               self.schema)
            return await self._publish(conn, months)

    async def _publish(self, conn: Connection, months: set[date] | None) -> int:
        assert self._producer is not None
        p = self.settings.projections
        tz = self.settings.agency_timezone
        now = self.clock()
        lateness = timedelta(days=p.release_lateness_days)
        columns = custom_metrics.row_columns(self.custom)
        month_groups = await month_rows(conn, self.schema, tz, months, columns)
        latest = await latest_releases(conn, self.schema, months)
        candidates = {m for m in {*month_groups, *latest} if month_closed(m, now, tz, lateness)}
        meta = await read_meta(conn, self.schema) or {"label": None, "vocabularies": []}
        used = await month_vocabularies(conn, self.schema, tz)
        sources = tuple(self.settings.demographics.sources)
        reader = ReadModelReader(conn, self.schema, tz, p.small_cell_max, keys=self.keys,
                                 demographic_sources=sources, custom=self.custom)
        releases: list[MonthRelease] = []
        for month in sorted(candidates):
            prior = latest.get(month)
            known = json.loads(prior["known"]) if prior else {}
            if prior is not None:
                check_definitions_version(json.loads(prior["extras"]).get("custom_metrics"), self.custom)
            last_day = next_month(month) - timedelta(days=1)
            grouped = month_groups.get(month, [])
            unmeasured = unmeasured_metrics(used.get(month, set()), meta["vocabularies"])
            extension = None
            if self.custom.metrics:  # county cells from the same rows as the built-in cells
                unmeasured.update(custom_metrics.unmeasured_custom(self.custom, unmeasured))
                extension = custom_metrics.extension(
                    self.custom, [r for r in grouped if r["behavioral_health"]],
                    custom_metrics.release_groups, [("precinct",), ("district",)], p.small_cell_max,
                )
            release = month_release(
                month, path_counts(grouped), seq=prior["seq"] + 1 if prior else 1,
                max_small=p.small_cell_max, attribute_max=p.attribute_total_max,
                known_before=known, vocabulary=meta["label"], unmeasured=unmeasured, extension=extension,
                population=self.areas.residents(),
            )
            release = with_extras(
                release,
                await reader.repeat_people(date_from=month, date_to=last_day),
                await reader.funnel_rows(date_from=month, date_to=last_day),
                p.small_cell_max, known,
                await reader.with_demographics(await reader.bh_incidents(date_from=month, date_to=last_day)),
                tz=tz, sources=sources,
            )
            extras = dict(release.extras)
            if self.custom.metrics:
                extras["custom_metrics"] = custom_metrics.section(self.custom)
            if self.areas.population is not None:  # the release states the table its rates used
                extras["population"] = self.areas.population.info()
            release = replace(release, extras=extras)
            dumped = [r.model_dump(mode="json") for r in release.records]
            if prior is None or not same_content(json.loads(prior["records"]), dumped) or (
                    json.loads(prior["extras"]) != release.extras):
                releases.append(release)
        if not releases:
            return 0
        scope = sorted(r.period_start for r in releases)
        prev_rows = await conn.fetch(
            f"""SELECT key, record::text AS record FROM "{self.schema}".outcome_publications
                WHERE period_start = any($1::date[])""", scope)
        previous = {r["key"]: r["record"] for r in prev_rows}
        current = {
            rec.key(): (rel.period_start, rec.model_dump_json()) for rel in releases for rec in rel.records
        }
        sends = [(k, v) for k, (_, v) in current.items()
                 if k not in previous or json.loads(previous[k]) != json.loads(v)]
        gone = [k for k in previous if k not in current]
        futures = [await self._producer.send(self.topic, key=k.encode(), value=v.encode()) for k, v in sends]
        futures += [await self._producer.send(self.topic, key=k.encode(), value=None) for k in gone]
        for fut in futures:
            await fut
        table = f'"{self.schema}".outcome_publications'
        if gone:
            await conn.execute(f"DELETE FROM {table} WHERE key = any($1::text[])", gone)
        if sends:
            await conn.executemany(
                f"""INSERT INTO {table} (key, period_start, record) VALUES ($1, $2, $3::jsonb)
                    ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record""",
                [(k, current[k][0], v) for k, v in sends])
        rows = []
        for r in releases:  # the sealed trace of what went out, then the release itself
            records = [rec.model_dump(mode="json") for rec in r.records]
            await append_audit_row(self.pool, self._audit, self.settings.core_schema, "release_log", {
                "release_id": r.release, "read_model_schema": self.schema, "channel": "topic",
                "vocabulary": meta["label"], "code_version": __version__, "records": len(r.records),
                "records_sha256": records_digest(release_content(records, r.extras)),
            })
            rows.append((r.release, r.period_start, r.seq, now, meta["label"], __version__,
                         json.dumps(records, sort_keys=True), json.dumps(r.extras, sort_keys=True),
                         json.dumps(r.known, sort_keys=True)))
        await conn.executemany(
            f"""INSERT INTO "{self.schema}".outcome_releases
                (release_id, period_start, seq, released_at, vocabulary, code_version, records, extras, known)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb)""",
            rows,
        )
        return len(futures)
