"""Read-model queries: async functions over a connection (or pool) and a schema that
return plain, JSON-ready dicts. The CLI (``hub report`` / ``hub timeline``) and the read
API build on these; signatures are stable.

Conventions: ``date_from`` / ``date_to`` are inclusive calendar dates in the agency's time
zone (``tz``); None = unbounded. Every count published to analysts goes through the
small-cell rule (:mod:`projections.suppression`): a suppressed cell is
``{"value": null, "suppressed": true}``; shares are null when their numerator or
denominator is suppressed. The tables are computed by the pure functions of
:mod:`projections.reporting` from the fetched rows. Timelines are *not* de-identified: callers must check the
reader's role and audit the read (the API does); ``role`` filters entries by visibility
and ``include_part2=False`` drops 42 CFR Part 2 entries (for readers without consent).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from hub.kernel.db import Executor, check_schema_name
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, lag, topic_partitions
from hub.kernel.log import family_topics
from hub.kernel.settings import Settings
from projections import reporting
from projections.reporting import HEADLINES, REPORT_VERSION  # noqa: F401 - re-exported

Conn = Executor
Schema = str | Settings  # a schema name, or settings (their postgres.schema, time zone, cell size)


def jsonable(value: Any) -> Any:
    """Datetimes and dates as ISO 8601 strings, recursively."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _bounds(date_from: date | None, date_to: date | None, tz: str) -> tuple[datetime | None, datetime | None]:
    zone = ZoneInfo(tz)
    lo = datetime.combine(date_from, time.min, zone) if date_from else None
    hi = datetime.combine(date_to + timedelta(days=1), time.min, zone) if date_to else None
    return lo, hi


def _s(schema: str | Settings) -> str:
    """The quoted schema name; a :class:`Settings` stands for its ``postgres.schema``."""
    name = schema.postgres.schema_ if isinstance(schema, Settings) else schema
    return f'"{check_schema_name(name)}"'


def _tz(schema: str | Settings, tz: str | None) -> str:
    if tz is not None:
        return tz
    return schema.agency_timezone if isinstance(schema, Settings) else "UTC"


def _max(schema: str | Settings, small_cell_max: int | None) -> int:
    if small_cell_max is not None:
        return small_cell_max
    return schema.projections.small_cell_max if isinstance(schema, Settings) else 10


async def bh_incidents(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str | None = None,
) -> list[dict[str, Any]]:
    """Incident rows of behavioral-health calls received in the range."""
    lo, hi = _bounds(date_from, date_to, _tz(schema, tz))
    rows = await conn.fetch(
        f"""SELECT * FROM {_s(schema)}.incident_summary
            WHERE behavioral_health AND received_at IS NOT NULL
              AND ($1::timestamptz IS NULL OR received_at >= $1)
              AND ($2::timestamptz IS NULL OR received_at < $2)""",
        lo,
        hi,
    )
    return [dict(r) for r in rows]


async def outcome_table(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    by: Literal["month", "area"] | None = None,
    tz: str | None = None,
    small_cell_max: int | None = None,
) -> dict[str, Any]:
    """Outcome counts of behavioral-health calls, in total and per month or per area,
    suppressed as one table (:func:`projections.reporting.outcome_table`: areas at the
    grain the feed publishes — precinct, else district — with ``group_kind`` naming it).
    ``{"total": {metric: cell}, "rows": [{"group_kind", "group", "metrics": {metric:
    cell}}]}``; shares are of ``calls`` in the same group."""
    tz = _tz(schema, tz)
    rows = await bh_incidents(conn, schema, date_from=date_from, date_to=date_to, tz=tz)
    return reporting.outcome_table(rows, by=by, tz=tz, small_cell_max=_max(schema, small_cell_max))


async def repeat_encounters(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str | None = None,
    small_cell_max: int | None = None,
) -> dict[str, Any]:
    """People (linked identities counted once) with 1+, 2+ and 3+ contacts in the range,
    and how many of those with 3+ were enrolled in services by the end of the range (the
    Colorado evaluation's metric). Suppressed with hidden complements (exactly one,
    exactly two contacts; 3+ not enrolled)."""
    tz = _tz(schema, tz)
    small_cell_max = _max(schema, small_cell_max)
    lo, hi = _bounds(date_from, date_to, tz)
    rows = await conn.fetch(
        f"""SELECT c.person, count(*) AS contacts,
                   bool_or(s.enrolled_in_services AND ($2::timestamptz IS NULL OR s.first_enrolled_at < $2))
                     AS enrolled
            FROM {_s(schema)}.person_contacts c JOIN {_s(schema)}.person_summary s USING (person)
            WHERE ($1::timestamptz IS NULL OR c.contact_at >= $1)
              AND ($2::timestamptz IS NULL OR c.contact_at < $2)
            GROUP BY c.person""",
        lo,
        hi,
    )
    return reporting.repeat_table(((r["contacts"], bool(r["enrolled"])) for r in rows), small_cell_max)


async def response_times(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str | None = None,
    small_cell_max: int | None = None,
) -> dict[str, Any]:
    """Queued → arrived, time on scene, and officer time returned when a co-responder took
    over (seconds), for behavioral-health calls; statistics over 10 or fewer calls are
    suppressed."""
    tz = _tz(schema, tz)
    small_cell_max = _max(schema, small_cell_max)
    rows = await bh_incidents(conn, schema, date_from=date_from, date_to=date_to, tz=tz)
    return reporting.response_times(rows, small_cell_max)


async def referral_funnel(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    tz: str | None = None,
    small_cell_max: int | None = None,
) -> dict[str, Any]:
    """How many referrals requested in the range reached each stage, and the time spent
    between stages (median seconds; suppressed over 10 or fewer referrals)."""
    tz = _tz(schema, tz)
    small_cell_max = _max(schema, small_cell_max)
    lo, hi = _bounds(date_from, date_to, tz)
    rows = [
        dict(r)
        for r in await conn.fetch(
            f"""SELECT * FROM {_s(schema)}.referral_funnel WHERE requested_at IS NOT NULL
              AND ($1::timestamptz IS NULL OR requested_at >= $1)
              AND ($2::timestamptz IS NULL OR requested_at < $2)""",
            lo,
            hi,
        )
    ]
    return reporting.referral_funnel(rows, small_cell_max)


async def report(
    conn: Conn,
    schema: Schema,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    by: Literal["month", "area"] | None = None,
    tz: str | None = None,
    small_cell_max: int | None = None,
) -> dict[str, Any]:
    """The outcome report (``hub report --json``), schema version 1::

        {"report": "outcomes", "version": 1, "from", "to", "by", "segment": "behavioral_health",
         "small_cell_max": 10,
         "headline": {"calls", "no_enforcement", "voluntary_transport", "enforcement",
                      "involuntary_hold", "emergency_department", "referral_made",
                      "connected_to_services", "repeat_three_plus_enrolled"},
         "outcomes": {"total": {...}, "rows": [...]},   # see outcome_table
         "repeat_encounters": {...}, "response_times": {...}, "referral_funnel": {...}}

    Every headline cell is ``{"value", "share", "suppressed"}``; shares are of
    behavioral-health calls (``enforcement`` = arrest or citation), except
    ``repeat_three_plus_enrolled`` whose share is of people with 3+ contacts."""
    tz = _tz(schema, tz)
    small_cell_max = _max(schema, small_cell_max)
    table = await outcome_table(
        conn, schema, date_from=date_from, date_to=date_to, by=by, tz=tz, small_cell_max=small_cell_max
    )
    repeat = await repeat_encounters(
        conn, schema, date_from=date_from, date_to=date_to, tz=tz, small_cell_max=small_cell_max
    )
    return reporting.report_document(
        table=table,
        repeat=repeat,
        times=await response_times(
            conn, schema, date_from=date_from, date_to=date_to, tz=tz, small_cell_max=small_cell_max
        ),
        funnel=await referral_funnel(
            conn, schema, date_from=date_from, date_to=date_to, tz=tz, small_cell_max=small_cell_max
        ),
        date_from=date_from,
        date_to=date_to,
        by=by,
        small_cell_max=small_cell_max,
    )


def _visible(entry: dict[str, Any], role: str | None, include_part2: bool) -> bool:
    if role is not None and role not in entry["visible_to"]:
        return False
    return include_part2 or not entry["part2"]


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    entry = dict(row)
    if isinstance(entry.get("detail"), str):
        entry["detail"] = json.loads(entry["detail"])
    entry["visible_to"] = list(entry["visible_to"])
    return entry


async def incident_timeline(
    conn: Conn, schema: Schema, incident_id: str, *, role: str | None = None, include_part2: bool = True
) -> list[dict[str, Any]]:
    """Every fact of one incident (CAD, case system, EHR; referral facts of referrals made
    for it) in time order; empty when unknown. Entry keys: event_id, at, system, source,
    event_type, incident_id, person, referral_id, summary, detail (payload JSON, sealed
    fields sealed), visible_to (roles), part2."""
    rows = await conn.fetch(
        f"SELECT * FROM {_s(schema)}.timeline_entries WHERE incident_id = $1 ORDER BY at, event_id",
        incident_id,
    )
    return [e for e in map(_entry, rows) if _visible(e, role, include_part2)]


async def incident_summary(conn: Conn, schema: Schema, incident_id: str) -> dict[str, Any] | None:
    """The ``incident_summary`` row (call, outcome, response times, persons) or None."""
    row = await conn.fetchrow(
        f"SELECT * FROM {_s(schema)}.incident_summary WHERE incident_id = $1", incident_id
    )
    return dict(row) if row else None


async def canonical_person(conn: Conn, schema: Schema, pseudonym: str) -> str | None:
    """The canonical pseudonym of ``pseudonym``'s linked cluster (None when unknown)."""
    return await conn.fetchval(
        f"SELECT canonical FROM {_s(schema)}.person_clusters WHERE pseudonym = $1", pseudonym
    )


async def person_timeline(
    conn: Conn, schema: Schema, pseudonym: str, *, role: str | None = None, include_part2: bool = True
) -> list[dict[str, Any]]:
    """A person's timeline across CAD, case system and EHR — the facts of every pseudonym
    linked to ``pseudonym`` and every fact of the incidents they were the subject of — in
    time order; empty when unknown. Entries as in :func:`incident_timeline`."""
    canonical = await canonical_person(conn, schema, pseudonym)
    if canonical is None:
        return []
    rows = await conn.fetch(
        f"""SELECT e.* FROM {_s(schema)}.person_timeline p
            JOIN {_s(schema)}.timeline_entries e USING (event_id)
            WHERE p.person = $1 ORDER BY e.at, e.event_id""",
        canonical,
    )
    return [e for e in map(_entry, rows) if _visible(e, role, include_part2)]


async def person_summary(conn: Conn, schema: Schema, pseudonym: str) -> dict[str, Any] | None:
    """The repeat-encounter row of ``pseudonym``'s cluster (members, contacts, enrolment)."""
    canonical = await canonical_person(conn, schema, pseudonym)
    if canonical is None:
        return None
    row = await conn.fetchrow(f"SELECT * FROM {_s(schema)}.person_summary WHERE person = $1", canonical)
    return dict(row) if row else None


async def consents(conn: Conn, schema: Schema, pseudonym: str) -> list[dict[str, Any]]:
    """Recorded consents of every pseudonym linked to ``pseudonym`` (for Part 2 decisions)."""
    rows = await conn.fetch(
        f"""SELECT c.* FROM {_s(schema)}.consents c
            WHERE c.person IN (SELECT pseudonym FROM {_s(schema)}.person_clusters WHERE canonical =
                               (SELECT canonical FROM {_s(schema)}.person_clusters WHERE pseudonym = $1))
               OR c.person = $1
            ORDER BY c.granted_at NULLS LAST, c.consent_id""",
        pseudonym,
    )
    return [dict(r) for r in rows]


async def projection_lag(conn: Conn, settings: Settings, schema: str | None = None) -> dict[str, Any]:
    """``{"total": int, "partitions": [{"topic", "partition", "lag"}]}``: records in the
    fact topics that the read models (``schema``, default ``settings``' read-model schema)
    have not applied yet (log end offset minus stored position)."""
    rows = await conn.fetch(
        f'SELECT topic, "partition", next_offset FROM {_s(schema or settings)}.projection_positions'
    )
    stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    clients = KafkaClients(settings.kafka)
    behind = lag(await end_offsets(clients, await topic_partitions(clients, family_topics(
        settings.kafka.topic_prefix))), stored)
    parts = [{"topic": tp.topic, "partition": tp.partition, "lag": n} for tp, n in behind.items()]
    return {"total": sum(behind.values()), "partitions": parts}
