"""Read-model queries: one :class:`ReadModelReader` — a connection (or pool), the read-model
schema, the agency's time zone and the small-cell maximum — whose async methods return
plain dicts (:func:`jsonable` makes them JSON-ready). The CLI (``hub report`` / ``hub
timeline``), the read API and the demo all read through it, so they report the same numbers.

Conventions: ``date_from`` / ``date_to`` are inclusive calendar dates in the reader's time
zone — the agency's (:meth:`ReadModelReader.from_settings`); None = unbounded. Every count
published to analysts goes through the small-cell rule (:mod:`projections.suppression`): a
suppressed cell is ``{"value": null, "suppressed": true}``; shares are null when their
numerator or denominator is suppressed. The tables are computed by the pure functions of
:mod:`projections.reporting` from the fetched rows. Timelines are *not* de-identified:
callers must check the reader's role and audit the read (the API does); ``role`` filters
entries by visibility and ``include_part2=False`` drops 42 CFR Part 2 entries (for readers
without consent).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from hub.kernel.crypto import KeyDestroyedError, Keyring, unseal
from hub.kernel.custom_fields import EMPTY, Definitions, load_definitions
from hub.kernel.db import Executor, check_schema_name
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import end_offsets, lag, topic_partitions
from hub.kernel.log import family_topics
from hub.kernel.settings import Settings
from projections import demographics, reporting
from projections.population import Areas, load_areas
from projections.reporting import HEADLINES, REPORT_VERSION, Grain  # noqa: F401 - HEADLINES, REPORT_VERSION re-exported
from projections.store import read_meta, stored_row
from schemas.demographics import normalized

Conn = Executor


class KeyResolver(Protocol):
    """What the reader needs of the keyring to open sealed demographics
    (:class:`hub.kernel.keystore.TokenKeyring`): the keys of given key ids, never created."""

    async def resolve_ids(self, kids: Iterable[str]) -> Keyring: ...


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


@dataclass(frozen=True)
class ReadModelReader:
    """Reads of one read-model schema. Invariants (checked on construction): ``schema`` is a
    valid schema name, ``tz`` a known IANA time zone (the agency's: month bounds, weeks and
    ``date_from`` / ``date_to`` are its calendar days), ``small_cell_max`` ≥ 0 (counts of 1
    to ``small_cell_max`` are suppressed). Build it with :meth:`from_settings` unless a
    test needs other values; every argument is explicit, so nothing falls back to UTC."""

    conn: Conn
    schema: str
    tz: str
    small_cell_max: int
    #: opens the people's sealed demographics for the report's demographics section and
    #: ``--by race|ethnicity|gender|age_band``; None: every call counts as not reported
    keys: KeyResolver | None = None
    #: the demographics sources in precedence order (the first is authoritative)
    demographic_sources: tuple[str, ...] = demographics.SOURCES
    #: the county's custom fields and metrics (:mod:`hub.kernel.custom_fields`): its metrics
    #: are cells of the outcome table, suppressed with it
    custom: Definitions = EMPTY
    #: the county's maps and population table (rates per 1,000 residents); None: no rates
    #: per resident, no maps
    areas: Areas | None = None

    def __post_init__(self) -> None:
        check_schema_name(self.schema)
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {self.tz!r} (use an IANA name, e.g. America/Los_Angeles)"
            ) from exc
        if self.small_cell_max < 0:
            raise ValueError(f"small_cell_max must be 0 or more, got {self.small_cell_max}")
        demographics.check_sources(self.demographic_sources)

    @classmethod
    def from_settings(
        cls, conn: Conn, settings: Settings, *, schema: str | None = None, keys: KeyResolver | None = None
    ) -> ReadModelReader:
        """The reader of ``schema`` (default ``settings.postgres.schema``) in the agency's
        time zone (``settings.agency_timezone``) with ``settings.projections.small_cell_max``
        and the county's demographics precedence (``settings.demographics.sources``), custom
        definitions (``settings.custom.definitions``), maps and population table
        (``settings.areas``: read and checked here, ConfigError)."""
        return cls(
            conn,
            schema=schema or settings.postgres.schema_,
            tz=settings.agency_timezone,
            small_cell_max=settings.projections.small_cell_max,
            keys=keys,
            demographic_sources=tuple(settings.demographics.sources),
            custom=load_definitions(settings.custom.definitions),
            areas=load_areas(settings.areas),
        )

    @property
    def _s(self) -> str:
        """The quoted schema name, for SQL."""
        return f'"{self.schema}"'

    # --- aggregates ------------------------------------------------------------------------
    async def bh_incidents(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict[str, Any]]:
        """Incident rows of behavioral-health calls received in the range."""
        lo, hi = _bounds(date_from, date_to, self.tz)
        rows = await self.conn.fetch(
            f"""SELECT * FROM {self._s}.incident_summary
                WHERE behavioral_health AND received_at IS NOT NULL
                  AND ($1::timestamptz IS NULL OR received_at >= $1)
                  AND ($2::timestamptz IS NULL OR received_at < $2)""",
            lo,
            hi,
        )
        return [dict(r) for r in rows]

    async def with_demographics(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` (incident rows) with the demographics of the persons on each call
        (:func:`projections.demographics.with_demographics`): their sealed reports are
        opened here, in memory only; an erased person's reports do not open and count as
        not reported."""
        persons = sorted({p for r in rows for p in r.get("persons") or ()})
        people: dict[str, demographics.Resolved] = {}
        if self.keys is not None and persons:
            found = await self.conn.fetch(
                f"SELECT * FROM {self._s}.person_demographics WHERE person = ANY($1::text[])", persons
            )
            keyring = await self.keys.resolve_ids({r["kid"] for r in found})
            reports: dict[str, list[demographics.Reported]] = defaultdict(list)
            for r in found:
                try:
                    opened = unseal(keyring, demographics.sealed_of(r))
                except KeyDestroyedError:
                    continue
                reports[r["person"]].append(
                    demographics.Reported(r["source"], r["at"], normalized(opened))
                )
            people = {p: demographics.resolve(rs, self.demographic_sources) for p, rs in reports.items()}
        return demographics.with_demographics(rows, people, self.tz)

    async def other_calls(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict[str, Any]]:
        """Calls for service that are not behavioral-health, received in the range, counted per
        (precinct, district, sector, beat): ``{precinct, district, sector, beat, n}`` (the
        denominators of rates per 1,000 calls, with the behavioral-health calls)."""
        lo, hi = _bounds(date_from, date_to, self.tz)
        rows = await self.conn.fetch(
            f"""SELECT precinct, district, sector, beat, count(*)::int AS n
                FROM {self._s}.incident_summary
                WHERE NOT behavioral_health AND received_at IS NOT NULL AND call_category IS NOT NULL
                  AND ($1::timestamptz IS NULL OR received_at >= $1)
                  AND ($2::timestamptz IS NULL OR received_at < $2)
                GROUP BY precinct, district, sector, beat""",
            lo,
            hi,
        )
        return [dict(r) for r in rows]

    async def area_codes(self, grain: str) -> list[str]:
        """The codes of ``grain`` (precinct / district / sector / beat) that behavioral-health
        calls in the read models carry."""
        if grain not in reporting.AREA_GRAIN_KINDS:
            raise ValueError(f"grain must be one of {', '.join(reporting.AREA_GRAIN_KINDS)}")
        rows = await self.conn.fetch(
            f"""SELECT DISTINCT {grain} AS code FROM {self._s}.incident_summary
                WHERE behavioral_health AND {grain} IS NOT NULL ORDER BY 1"""
        )
        return [r["code"] for r in rows]

    async def outcome_table(
        self,
        *,
        date_from: date | None = None,
        date_to: date | None = None,
        by: Grain | None = None,
    ) -> dict[str, Any]:
        """Outcome counts of behavioral-health calls, in total and per month or per area,
        suppressed as one table (:func:`projections.reporting.outcome_table`: areas at the
        grain the feed publishes — precinct, else district — with ``group_kind`` naming it).
        ``{"total": {metric: cell}, "rows": [{"group_kind", "group", "metrics": {metric:
        cell}}]}``; shares are of ``calls`` in the same group."""
        rows = await self.bh_incidents(date_from=date_from, date_to=date_to)
        if by in reporting.DEMOGRAPHIC_GRAINS:
            rows = await self.with_demographics(rows)
        unmeasured = reporting.unmeasured_metrics({r["vocabulary"] for r in rows}, await self.vocabularies())
        return reporting.outcome_table(
            rows, by=by, tz=self.tz, small_cell_max=self.small_cell_max, unmeasured=unmeasured,
            custom=self.custom,
        )

    async def vocabulary(self) -> dict[str, Any]:
        """``{"label", "digest", "vocabularies": [...]}``: the vocabularies the schema's rows
        were derived with (empty before a projector or replay recorded them)."""
        return await read_meta(self.conn, self.schema) or {"label": None, "digest": None, "vocabularies": []}

    async def vocabularies(self) -> list[dict[str, Any]]:
        return list((await self.vocabulary())["vocabularies"])

    async def repeat_encounters(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> dict[str, Any]:
        """People (linked identities counted once) with 1+, 2+ and 3+ contacts in the range,
        and how many of those with 3+ were enrolled in services by the end of the range (the
        Colorado evaluation's metric). Suppressed with hidden complements (exactly one,
        exactly two contacts; 3+ not enrolled)."""
        return reporting.repeat_table(await self.repeat_people(date_from=date_from, date_to=date_to),
                                      self.small_cell_max)

    async def repeat_people(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> list[tuple[int, bool]]:
        """(contacts in the range, enrolled in behavioral-health services by its end) per
        person (linked identities counted once) with a contact in the range."""
        lo, hi = _bounds(date_from, date_to, self.tz)
        rows = await self.conn.fetch(
            f"""SELECT c.person, count(*) AS contacts,
                       bool_or(s.enrolled_in_services
                               AND ($2::timestamptz IS NULL OR s.first_enrolled_at < $2)) AS enrolled
                FROM {self._s}.person_contacts c JOIN {self._s}.person_summary s USING (person)
                WHERE ($1::timestamptz IS NULL OR c.contact_at >= $1)
                  AND ($2::timestamptz IS NULL OR c.contact_at < $2)
                GROUP BY c.person""",
            lo,
            hi,
        )
        return [(r["contacts"], bool(r["enrolled"])) for r in rows]

    async def response_times(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> dict[str, Any]:
        """Queued → arrived, time on scene, and officer time returned when a co-responder took
        over (seconds), for behavioral-health calls; statistics over ``small_cell_max`` or
        fewer calls are suppressed."""
        rows = await self.bh_incidents(date_from=date_from, date_to=date_to)
        unmeasured = reporting.unmeasured_metrics({r["vocabulary"] for r in rows}, await self.vocabularies())
        return reporting.response_times(rows, self.small_cell_max, unmeasured)

    async def referral_funnel(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> dict[str, Any]:
        """How many referrals requested in the range reached each stage, and the time spent
        between stages (median seconds; suppressed over ``small_cell_max`` or fewer referrals)."""
        rows = await self.funnel_rows(date_from=date_from, date_to=date_to)
        return reporting.referral_funnel(rows, self.small_cell_max)

    async def funnel_rows(
        self, *, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict[str, Any]]:
        """``referral_funnel`` rows of the referrals requested in the range."""
        lo, hi = _bounds(date_from, date_to, self.tz)
        return [
            dict(r)
            for r in await self.conn.fetch(
                f"""SELECT * FROM {self._s}.referral_funnel WHERE requested_at IS NOT NULL
                  AND ($1::timestamptz IS NULL OR requested_at >= $1)
                  AND ($2::timestamptz IS NULL OR requested_at < $2)""",
                lo,
                hi,
            )
        ]

    async def report(
        self,
        *,
        date_from: date | None = None,
        date_to: date | None = None,
        by: Grain | None = None,
    ) -> dict[str, Any]:
        """The outcome report (``hub report --json``), schema version 2::

            {"report": "outcomes", "version": 2, "vocabulary": {"label", "digest", "vocabularies"},
             "not_measured": {metric: reason}, "footnotes": [...],
             "from", "to", "by", "segment": "behavioral_health",
             "small_cell_max": 10,
             "headline": {"calls", "no_enforcement", "voluntary_transport", "enforcement",
                          "involuntary_hold", "emergency_department", "referral_made",
                          "connected_to_services", "repeat_three_plus_enrolled"},
             "outcomes": {"total": {...}, "rows": [...]},   # see outcome_table
             "repeat_encounters": {...}, "response_times": {...}, "referral_funnel": {...},
             "use_of_force": {"total", "by_outcome", "rows"},   # see use_of_force_table
             "demographics": {"sources", "total", "rows"}}       # see demographics_table

        Every headline cell is ``{"value", "share", "suppressed", "measured"}`` (a metric the
        sources cannot express: ``value`` null, ``measured`` false, ``reason``); shares are of
        behavioral-health calls (``enforcement`` = arrest or citation), except
        ``repeat_three_plus_enrolled`` whose share is of people with 3+ contacts."""
        meta = await self.vocabulary()
        rows = await self.with_demographics(await self.bh_incidents(date_from=date_from, date_to=date_to))
        labels = {r["vocabulary"] for r in rows}
        unmeasured = reporting.unmeasured_metrics(labels, meta["vocabularies"])
        rated = by is None or by in reporting.RATE_GRAINS
        others = await self.other_calls(date_from=date_from, date_to=date_to) if rated else []
        service = reporting.calls_for_service(rows, others, by, self.tz) if rated else None
        population = self.areas.population if self.areas is not None else None
        table = reporting.outcome_table(
            rows, by=by, tz=self.tz, small_cell_max=self.small_cell_max, unmeasured=unmeasured,
            custom=self.custom,
            service_calls=service, population=None if population is None else population.residents,
        )
        demo = demographics.demographics_table(
            rows,
            small_cell_max=self.small_cell_max,
            sources=self.demographic_sources,
            also_hidden=reporting.hidden_cells(table) if by in reporting.DEMOGRAPHIC_GRAINS else (),
        )
        repeat = await self.repeat_encounters(date_from=date_from, date_to=date_to)
        return reporting.report_document(
            table=table,
            repeat=repeat,
            times=reporting.response_times(rows, self.small_cell_max, unmeasured),
            funnel=await self.referral_funnel(date_from=date_from, date_to=date_to),
            force=reporting.use_of_force_table(rows, by=by, tz=self.tz, small_cell_max=self.small_cell_max),
            demographics=demo,
            date_from=date_from,
            date_to=date_to,
            by=by,
            small_cell_max=self.small_cell_max,
            vocabulary={"label": meta["label"], "digest": meta["digest"],
                        "vocabularies": [{k: v[k] for k in ("name", "version", "digest")}
                                         for v in meta["vocabularies"]]},
            unmeasured=unmeasured,
            notes=reporting.footnotes(labels, meta["vocabularies"]),
            custom=self.custom,
            population=None if population is None else population.info(),
        )

    # --- releases (what analysts may read: projections.releases) ------------------------------
    async def releases(self, *, period: str | None = None, latest: bool = False) -> list[dict[str, Any]]:
        """Every release (or only each month's latest), oldest month first: ``release_id``,
        ``period`` (YYYY-MM), ``seq``, ``released_at``, ``vocabulary``, ``code_version``."""
        rows = await self.conn.fetch(
            f"""SELECT release_id, to_char(period_start, 'YYYY-MM') AS period, seq, released_at, vocabulary,
                       code_version,
                       seq = max(seq) OVER (PARTITION BY period_start) AS is_latest
                FROM {self._s}.outcome_releases
                WHERE $1::text IS NULL OR to_char(period_start, 'YYYY-MM') = $1
                ORDER BY period_start, seq""",
            period,
        )
        out = [dict(r) for r in rows if r["is_latest"] or not latest]
        for r in out:
            r.pop("is_latest")
            r["small_cell_max"] = self.small_cell_max
        return out

    async def release(self, release_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(the release — with ``extras``: its repeat encounters and funnel —, its records
        exactly as published), or None when there is no such release."""
        row = await self.conn.fetchrow(
            f"""SELECT release_id, to_char(period_start, 'YYYY-MM') AS period, seq, released_at, vocabulary,
                       code_version, records::text AS records, extras::text AS extras
                FROM {self._s}.outcome_releases WHERE release_id = $1""",
            release_id,
        )
        if row is None:
            return None
        meta = {k: v for k, v in dict(row).items() if k not in ("records", "extras")}
        records = json.loads(row["records"])
        meta["extras"] = json.loads(row["extras"])
        meta["small_cell_max"] = records[0]["small_cell_max"] if records else self.small_cell_max
        return meta, records

    # --- timelines (person-level: callers check the role and audit the read) -----------------
    async def incident_timeline(
        self, incident_id: str, *, role: str | None = None, include_part2: bool = True
    ) -> list[dict[str, Any]]:
        """Every fact of one incident (CAD, case system, EHR; referral facts of referrals made
        for it) in time order; empty when unknown. Entry keys: event_id, at, system, source,
        event_type, incident_id, person, referral_id, summary, detail (payload JSON, sealed
        fields sealed), visible_to (roles), part2."""
        rows = await self.conn.fetch(
            f"SELECT * FROM {self._s}.timeline_entries WHERE incident_id = $1 ORDER BY at, event_id",
            incident_id,
        )
        return [e for e in map(_entry, rows) if _visible(e, role, include_part2)]

    async def incident_summary(self, incident_id: str) -> dict[str, Any] | None:
        """The ``incident_summary`` row (call, outcome, response times, persons, the county's
        custom fields as a mapping) or None."""
        row = await self.conn.fetchrow(
            f"SELECT * FROM {self._s}.incident_summary WHERE incident_id = $1", incident_id
        )
        return None if row is None else stored_row(row)

    async def search_incidents(
        self,
        *,
        text: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        area: str | None = None,
        behavioral_health: bool | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Incidents for the intake form to link to, newest first: ``text`` is part of the
        incident id (its CAD number), ``area`` any of precinct / district / sector / beat
        (exact, case-insensitive). Only the call's CAD attributes (no persons)."""
        lo, hi = _bounds(date_from, date_to, self.tz)
        rows = await self.conn.fetch(
            f"""SELECT incident_id, received_at, call_category, behavioral_health, precinct, district,
                       sector, beat, cad_outcome, co_responder
                FROM {self._s}.incident_summary
                WHERE ($1::text IS NULL OR incident_id ILIKE '%' || $1 || '%')
                  AND ($2::timestamptz IS NULL OR received_at >= $2)
                  AND ($3::timestamptz IS NULL OR received_at < $3)
                  AND ($4::text IS NULL OR lower($4) IN (lower(precinct), lower(district), lower(sector),
                                                        lower(beat)))
                  AND ($5::boolean IS NULL OR behavioral_health = $5)
                  AND received_at IS NOT NULL
                ORDER BY received_at DESC, incident_id LIMIT $6""",
            text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if text else None,
            lo, hi, area, behavioral_health, limit,
        )
        return [dict(r) for r in rows]

    async def frequent_users(
        self, *, program: str, min_contacts: int, since: datetime, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The people in ``program``'s care (a case it opened, or an incident it engaged a
        clinician on) with ``min_contacts`` or more behavioral-health contacts since
        ``since``, most contacts first: ``person`` (canonical pseudonym), ``contacts``,
        ``last_contact_at``, ``last_incident_id``, and their ``referrals``, ``enrolments`` and
        ``consents`` (every one, Part 2 included: the caller filters what the reader may see)."""
        rows = await self.conn.fetch(
            f"""WITH care AS (
                    SELECT coalesce(pc.canonical, f.person) AS person FROM {self._s}.facts f
                    LEFT JOIN {self._s}.person_clusters pc ON pc.pseudonym = f.person
                    WHERE f.event_type LIKE 'case.opened.%' AND f.data->>'program' = $1
                    UNION
                    SELECT c.person FROM {self._s}.facts f
                    JOIN {self._s}.person_contacts c ON c.incident_id = f.incident_id
                    WHERE f.event_type LIKE 'encounter.clinician.engaged.%' AND f.data->>'program' = $1
                )
                SELECT c.person, count(*) AS contacts, max(c.contact_at) AS last_contact_at,
                       (array_agg(c.incident_id ORDER BY c.contact_at DESC))[1] AS last_incident_id
                FROM {self._s}.person_contacts c JOIN {self._s}.incident_summary i USING (incident_id)
                WHERE i.behavioral_health AND c.contact_at >= $2 AND c.person IN (SELECT person FROM care)
                GROUP BY c.person HAVING count(*) >= $3
                ORDER BY count(*) DESC, max(c.contact_at) DESC, c.person LIMIT $4""",
            program, since, min_contacts, limit,
        )
        people = [dict(r) for r in rows]
        if not people:
            return []
        persons = [p["person"] for p in people]
        members = f"""coalesce((SELECT canonical FROM {self._s}.person_clusters WHERE pseudonym = t.person),
                               t.person)"""
        referrals = await self.conn.fetch(
            f"""SELECT {members} AS canonical, t.referral_id, t.destination, t.service_type, t.status,
                       t.requested_at, t.substance_use
                FROM {self._s}.referral_funnel t
                WHERE {members} = ANY($1::text[]) AND t.requested_at IS NOT NULL
                ORDER BY t.requested_at, t.referral_id""",
            persons,
        )
        enrolments = await self.conn.fetch(
            f"""SELECT {members} AS canonical, t.at, t.data->>'service_type' AS service_type,
                       t.data->>'provider' AS provider, coalesce((t.data->>'substance_use')::boolean, false)
                       AS substance_use
                FROM {self._s}.facts t WHERE t.event_type LIKE 'case.service.enrolled.%'
                  AND {members} = ANY($1::text[]) ORDER BY t.at, t.event_id""",
            persons,
        )
        consents = await self.conn.fetch(
            f"""SELECT {members} AS canonical, t.* FROM {self._s}.consents t
                WHERE {members} = ANY($1::text[]) ORDER BY t.granted_at NULLS LAST, t.consent_id""",
            persons,
        )
        by_person: dict[str, dict[str, Any]] = {
            p["person"]: {**p, "referrals": [], "enrolments": [], "consents": []} for p in people
        }
        for kind, found in (("referrals", referrals), ("enrolments", enrolments), ("consents", consents)):
            for r in found:
                item = {k: v for k, v in dict(r).items() if k != "canonical"}
                by_person[r["canonical"]][kind].append(item)
        return list(by_person.values())

    async def canonical_person(self, pseudonym: str) -> str | None:
        """The canonical pseudonym of ``pseudonym``'s linked cluster (None when unknown)."""
        return await self.conn.fetchval(
            f"SELECT canonical FROM {self._s}.person_clusters WHERE pseudonym = $1", pseudonym
        )

    async def person_timeline(
        self, pseudonym: str, *, role: str | None = None, include_part2: bool = True
    ) -> list[dict[str, Any]]:
        """A person's timeline across CAD, case system and EHR — the facts of every pseudonym
        linked to ``pseudonym`` and every fact of the incidents they were the subject of — in
        time order; empty when unknown. Entries as in :meth:`incident_timeline`."""
        canonical = await self.canonical_person(pseudonym)
        if canonical is None:
            return []
        rows = await self.conn.fetch(
            f"""SELECT e.* FROM {self._s}.person_timeline p
                JOIN {self._s}.timeline_entries e USING (event_id)
                WHERE p.person = $1 ORDER BY e.at, e.event_id""",
            canonical,
        )
        return [e for e in map(_entry, rows) if _visible(e, role, include_part2)]

    async def person_summary(self, pseudonym: str) -> dict[str, Any] | None:
        """The repeat-encounter row of ``pseudonym``'s cluster (members, contacts, enrolment)."""
        canonical = await self.canonical_person(pseudonym)
        if canonical is None:
            return None
        row = await self.conn.fetchrow(f"SELECT * FROM {self._s}.person_summary WHERE person = $1", canonical)
        return dict(row) if row else None

    async def consents(self, pseudonym: str) -> list[dict[str, Any]]:
        """Recorded consents of every pseudonym linked to ``pseudonym`` (for Part 2 decisions)."""
        rows = await self.conn.fetch(
            f"""SELECT c.* FROM {self._s}.consents c
                WHERE c.person IN (SELECT pseudonym FROM {self._s}.person_clusters WHERE canonical =
                                   (SELECT canonical FROM {self._s}.person_clusters WHERE pseudonym = $1))
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
        f'SELECT topic, "partition", next_offset'
        f' FROM "{check_schema_name(schema or settings.postgres.schema_)}".projection_positions'
    )
    stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    clients = KafkaClients(settings.kafka)
    behind = lag(await end_offsets(clients, await topic_partitions(clients, family_topics(
        settings.kafka.topic_prefix))), stored)
    parts = [{"topic": tp.topic, "partition": tp.partition, "lag": n} for tp, n in behind.items()]
    return {"total": sum(behind.values()), "partitions": parts}
