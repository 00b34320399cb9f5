"""What the read API needs from the rest of the hub, as a port.

The API depends on this protocol only; :mod:`hub.entry.api.readmodels` adapts the projections'
query functions and the event log's PostgreSQL state to it. Keeping the port narrow lets
the role tests run the real API, the real access log and real PostgreSQL with read models
filled from the real projections.

Timeline entries are mappings with at least ``event_id``, ``event_type``, ``family``,
``at`` (ISO-8601) and ``data`` (the payload's JSON form; sealed fields stay sealed), and
optionally ``incident_id`` and ``person`` (pseudonym).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol


class ReadModels(Protocol):
    async def incident_timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """Entries of one incident in time order; empty when unknown."""
        ...

    async def person_timeline(self, person: str) -> list[dict[str, Any]]:
        """Entries of one person (pseudonym) in time order; empty when unknown."""
        ...

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
        """Imported CAD incidents for the intake form, newest first: ``incident_id``,
        ``received_at``, ``call_category``, ``behavioral_health``, the area columns,
        ``cad_outcome``, ``co_responder`` (no persons)."""
        ...

    async def frequent_users(
        self, *, program: str, min_contacts: int, since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """People of ``program`` with ``min_contacts``+ behavioral-health contacts since
        ``since`` (see :meth:`projections.queries.ReadModelReader.frequent_users`); Part 2
        facts included — the route filters them (:mod:`hub.entry.api.worklist`)."""
        ...

    async def outcome_report(
        self, *, date_from: date | None, date_to: date | None, by: str | None
    ) -> dict[str, Any]:
        """The same document ``hub report --json`` prints: small cells already suppressed by
        the read-model queries (:mod:`projections.suppression`), never raw small counts."""
        ...

    async def outcomes_by_week(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]:
        """The report's ``outcomes`` section grouped by ISO week, suppressed as one table."""
        ...

    async def released_report(self, *, period: str | None) -> dict[str, Any] | None:
        """An analyst's report: the latest release of ``period`` (YYYY-MM; None = the latest
        released month) as a report document (:func:`projections.releases.release_document`),
        or None when nothing is released."""
        ...

    async def released_by_month(self) -> dict[str, Any]:
        """The ``outcomes`` section by month from each month's latest release."""
        ...

    def map_grains(self) -> list[str]:
        """The grains the county supplied a map of (``settings.areas.maps``), in its order."""
        ...

    async def area_map(self, grain: str) -> dict[str, Any] | None:
        """The validated map of ``grain`` (:meth:`projections.geojson.AreaMap.document`) and
        ``unmapped``: the grain's area codes in the read models that it has no area for;
        None when no map of ``grain`` is configured."""
        ...

    async def releases(self) -> list[dict[str, Any]]:
        """Every release: id, period, seq, released_at, vocabulary, code version."""
        ...

    async def release(self, release_id: str) -> dict[str, Any] | None:
        """One release with its records exactly as published, or None."""
        ...

    async def referral_funnel(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]: ...

    async def repeat_encounters(self, *, date_from: date | None, date_to: date | None) -> dict[str, Any]: ...

    async def projection_lag(self) -> dict[str, Any]:
        """``{"total": int, "partitions": [{"topic", "partition", "lag"}...]}``."""
        ...

    async def dead_letters(self, *, limit: int, source_family: str | None) -> list[dict[str, Any]]:
        """Dead-letter metadata (never the raw payload), newest first."""
        ...

    async def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters per source family."""
        ...

    async def verification(self) -> dict[str, Any] | None:
        """The latest ``hub verify`` result, or ``None`` when it never ran."""
        ...
