"""The :class:`~hub.entry.api.ports.ReadModels` port over PostgreSQL and Kafka.

- timelines, outcome counts, referral funnel and repeat encounters come from the
  projections' reader (:class:`projections.queries.ReadModelReader`, in the agency's time
  zone), so the API reports exactly what ``hub report --json`` prints;
- dead letters and verification results come from the event log's core schema
  (``deadletters``, ``verify_runs``);
- projection lag compares the projections' recorded offsets with the log end offsets.

Timeline entries are normalized here for the role policy: ``family`` (from the event type),
``substance_use`` (the projections' ``part2`` flag) and ``data`` (the payload JSON). Sealed
(clinical) fields never leave the API as ciphertext: each becomes ``{"sealed": true,
"erased": <the person's key was destroyed>}`` and an entry with an erased field carries
``"erased": true`` (crypto-shredded content shows as erased, it does not break the read).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from hub.kernel.custom_fields import load_definitions
from hub.kernel.db import Executor, check_schema_name
from hub.kernel.settings import Settings
from projections import queries
from projections.counts import incident_metrics
from projections.geojson import unmatched
from projections.outcomes import suppressed_table
from projections.releases import release_document, released_force_months, released_months
from projections.reporting import parse_grain
from schemas.base import event_class
from schemas.consent import ConsentGranted


def normalize_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A projections timeline row → the API's timeline entry (pure)."""
    entry = dict(row)
    detail = entry.pop("detail", None)
    if isinstance(detail, str):
        detail = json.loads(detail)
    entry["data"] = detail or {}
    try:
        entry["family"] = event_class(entry["event_type"]).family
    except KeyError:
        entry["family"] = "unknown"
    entry["substance_use"] = bool(entry.pop("part2", False))
    entry.pop("visible_to", None)
    return queries.jsonable(entry)


def is_sealed_value(value: Any) -> bool:
    """A JSON form of :class:`schemas.base.Sealed` (``kid``, ``nonce``, ``ciphertext``)."""
    return isinstance(value, dict) and {"kid", "nonce", "ciphertext"} <= value.keys()


def sealed_kids(value: Any) -> set[str]:
    """Key ids of every sealed value nested in ``value``."""
    if is_sealed_value(value):
        return {str(value["kid"])}
    if isinstance(value, dict):
        return set().union(*(sealed_kids(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(sealed_kids(v) for v in value))
    return set()


def mark_sealed(value: Any, destroyed: set[str] | frozenset[str]) -> Any:
    """``value`` with each sealed value replaced by ``{"sealed": True, "erased": bool}``
    (pure; the ciphertext and key id are not passed on)."""
    if is_sealed_value(value):
        return {"sealed": True, "erased": str(value["kid"]) in destroyed}
    if isinstance(value, dict):
        return {k: mark_sealed(v, destroyed) for k, v in value.items()}
    if isinstance(value, list):
        return [mark_sealed(v, destroyed) for v in value]
    return value


def mark_entries(
    entries: list[dict[str, Any]], destroyed: set[str] | frozenset[str], field: str = "data"
) -> list[dict[str, Any]]:
    """Timeline entries with the sealed values of their payload (``field``: ``data`` in the
    API's normalized entries, ``detail`` in the projections' rows) marked, and ``erased``
    per entry (pure)."""
    out = []
    for entry in entries:
        kids = sealed_kids(entry.get(field))
        marked = {**entry, field: mark_sealed(entry.get(field) or {}, destroyed)}
        marked["erased"] = bool(kids & destroyed)
        out.append(marked)
    return out


async def render_sealed(
    conn: Executor,
    core_schema: str,
    entries: list[dict[str, Any]],
    field: str = "data",
) -> list[dict[str, Any]]:
    """The one rendering of sealed timeline content for every reader (the API and ``hub
    timeline``): each sealed value becomes ``{"sealed": true, "erased": <the person's key
    was destroyed>}``; ciphertext, nonce and key id never leave. No reader gets sealed
    content opened — not even a clinician: clinical narrative stays in the source system."""
    kids = set().union(*(sealed_kids(e.get(field)) for e in entries)) if entries else set()
    destroyed: set[str] = set()
    if kids:
        rows = await conn.fetch(
            f'SELECT kid FROM "{check_schema_name(core_schema)}".person_keys'
            " WHERE kid = ANY($1::text[]) AND destroyed_at IS NOT NULL",
            sorted(kids),
        )
        destroyed = {r["kid"] for r in rows}
    return mark_entries(entries, destroyed, field)


def weekly_table(rows: list[dict[str, Any]], tz: str, small_cell_max: int) -> dict[str, Any]:
    """Incident rows → the suppressed by-week outcome table (pure)."""
    zone = ZoneInfo(tz)
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        local = row["received_at"].astimezone(zone).date()
        week = (local - timedelta(days=local.weekday())).isoformat()
        for metric in incident_metrics(row):
            counts[("all", "all", metric)] += 1
            counts[("week", week, metric)] += 1
    table = suppressed_table(counts, ("week",), small_cell_max).shown()
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for (group, metric), value in table.items():
        calls = table[(group, "calls")]
        share = round(value / calls, 4) if metric != "calls" and value is not None and calls else None
        groups.setdefault(group, {})[metric] = {"value": value, "share": share, "suppressed": value is None}
    total = groups.pop(("all", "all"))
    return {
        "total": total,
        "rows": [{"group_kind": k, "group": g, "metrics": m} for (k, g), m in sorted(groups.items())],
    }


class PostgresReadModels:
    """Reads for the API; one instance per process, sharing the process's pool."""

    LAG_CACHE_SECONDS = 5.0

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, keys: queries.KeyResolver | None = None
    ) -> None:
        """``keys`` opens sealed demographics for the report (without it every call counts
        as not reported)."""
        self.settings = settings
        self.pool = pool
        self.core = settings.core_schema
        self.reader = queries.ReadModelReader.from_settings(pool, settings, keys=keys)
        self._lag: tuple[float, dict[str, Any]] | None = None

    # --- timelines ---------------------------------------------------------------------------
    async def incident_timeline(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self.reader.incident_timeline(incident_id)
        return await self._marked([normalize_entry(r) for r in rows])

    async def person_timeline(self, person: str) -> list[dict[str, Any]]:
        rows = await self.reader.person_timeline(person)
        return await self._marked([normalize_entry(r) for r in rows])

    # --- intake ------------------------------------------------------------------------------
    async def search_incidents(
        self,
        *,
        text: str | None,
        date_from: date | None,
        date_to: date | None,
        area: str | None,
        behavioral_health: bool | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        return await self.reader.search_incidents(
            text=text,
            date_from=date_from,
            date_to=date_to,
            area=area,
            behavioral_health=behavioral_health,
            limit=limit,
        )

    async def frequent_users(
        self, *, program: str, min_contacts: int, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        return await self.reader.frequent_users(
            program=program, min_contacts=min_contacts, since=since, limit=limit
        )

    async def incident_known(self, incident_id: str) -> bool:
        """Whether a CAD incident with this id was imported (its call is in the read models)."""
        summary = await self.reader.incident_summary(incident_id)
        return summary is not None and summary["received_at"] is not None

    async def consents_of(self, person: str) -> list[ConsentGranted]:
        """The person's recorded, unrevoked consents (their cluster's), as consent facts for
        the Part 2 gate (:func:`connectors.referrals.consent.decide`)."""
        return [
            ConsentGranted(
                consent_id=r["consent_id"],
                person=person,
                at=r["granted_at"],
                recipients=tuple(r["recipients"] or ()),
                scope=tuple(r["scope"] or ()),
                purpose=r["purpose"] or "treatment",
                expires_at=r["expires_at"],
            )
            for r in await self.reader.consents(person)
            if r["revoked_at"] is None and r["granted_at"] is not None
        ]

    async def _marked(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await render_sealed(self.pool, self.core, entries)

    # --- aggregates ----------------------------------------------------------------------------
    async def outcome_report(
        self, *, date_from: date | None, date_to: date | None, by: str | None
    ) -> dict[str, Any]:
        """The live report, with the county metrics of the definitions file as it is now (a
        metric added to the file shows without a restart)."""
        reader = replace(self.reader, custom=load_definitions(self.settings.custom.definitions))
        doc = await reader.report(date_from=date_from, date_to=date_to, by=parse_grain(by))
        return queries.jsonable(doc)

    async def outcomes_by_week(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]:
        """Outcome counts of behavioral-health calls per ISO week (Monday, agency time),
        suppressed as one table with the projections' own rule
        (:func:`projections.outcomes.suppressed_table`), in the shape of the report's
        ``outcomes`` section (``group_kind`` = ``week``, ``group`` = the Monday)."""
        rows = await self.reader.bh_incidents(date_from=date_from, date_to=date_to)
        return weekly_table(rows, self.reader.tz, self.reader.small_cell_max)

    async def released_report(self, *, period: str | None) -> dict[str, Any] | None:
        known = await self.reader.releases(period=period, latest=True)
        if not known:
            return None
        found = await self.reader.release(known[-1]["release_id"])
        assert found is not None
        return queries.jsonable(release_document(*found))

    async def released_by_month(self) -> dict[str, Any]:
        """Each month's latest release: ``{"outcomes": <section by month>, "use_of_force":
        [<row by month>]}`` — the cells as released."""
        found = [await self.reader.release(r["release_id"]) for r in await self.reader.releases(latest=True)]
        latest = [r for r in found if r is not None]
        return queries.jsonable(
            {"outcomes": released_months(latest), "use_of_force": released_force_months(latest)}
        )

    def map_grains(self) -> list[str]:
        return [] if self.reader.areas is None else list(self.reader.areas.maps)

    async def area_map(self, grain: str) -> dict[str, Any] | None:
        found = None if self.reader.areas is None else self.reader.areas.maps.get(grain)
        if found is None:
            return None
        codes = await self.reader.area_codes(grain)
        return {**found.document(), "unmapped": unmatched(found, codes)}

    async def releases(self) -> list[dict[str, Any]]:
        return queries.jsonable(await self.reader.releases())

    async def release(self, release_id: str) -> dict[str, Any] | None:
        found = await self.reader.release(release_id)
        if found is None:
            return None
        meta, records = found
        return queries.jsonable({**meta, "records": records})

    async def referral_funnel(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]:
        doc = await self.reader.referral_funnel(date_from=date_from, date_to=date_to)
        return queries.jsonable(doc)

    async def repeat_encounters(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]:
        doc = await self.reader.repeat_encounters(date_from=date_from, date_to=date_to)
        return queries.jsonable(doc)

    # --- operations ----------------------------------------------------------------------------
    async def projection_lag(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._lag is not None and now - self._lag[0] < self.LAG_CACHE_SECONDS:
            return self._lag[1]
        lag = await queries.projection_lag(self.pool, self.settings)
        self._lag = (now, lag)
        return lag

    async def dead_letters(self, *, limit: int, source_family: str | None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT id, source, source_family, profile, record_ref, stage, reason, at, status, attempts,"
            f' redriven_at FROM "{self.core}".deadletters'
            " WHERE ($1::text IS NULL OR source_family = $1) ORDER BY at DESC, id LIMIT $2",
            source_family,
            limit,
        )
        return [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(r).items()} for r in rows
        ]

    async def dead_letter_counts(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            f'SELECT source_family, count(*) AS n FROM "{self.core}".deadletters'
            " WHERE status = 'open' GROUP BY source_family ORDER BY source_family"
        )
        return {r["source_family"]: r["n"] for r in rows}

    async def verification(self) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f'SELECT ok, breaks, records, started_at, finished_at, result FROM "{self.core}".verify_runs'
            " ORDER BY id DESC LIMIT 1"
        )
        if row is None:
            return None
        result = json.loads(row["result"]) if isinstance(row["result"], str) else row["result"]
        return {
            "ok": row["ok"],
            "breaks": row["breaks"],
            "records": row["records"],
            "started_at": row["started_at"].isoformat(),
            "checked_at": row["finished_at"].isoformat(),
            "break_details": result.get("breaks", []),
            "orphan_copies": result.get("orphan_copies", []),  # crash leftovers, not breaks
            "partitions": result.get("partitions", []),
        }
