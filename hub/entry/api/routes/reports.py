"""Aggregates (de-identified by the read-model queries, small cells suppressed): the
outcome report, the referral funnel, repeat encounters, what the dashboard draws, and the
releases.

Operators and auditors (:data:`hub.entry.api.roles.LIVE_AGGREGATE_ROLES`) read the live
aggregates over any date range. Analysts read released months only — the closed months'
tables exactly as the outcome topic published them (:mod:`projections.releases`): a date
range, a grouping, the funnel or repeat encounters are refused (403) for them, since
overlapping ranges could be subtracted from each other; ``?period=YYYY-MM`` picks a month.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from hub.entry.api.areas import area_panels
from hub.entry.api.dashboard import dashboard_view
from hub.entry.api.deps import From, ReadModelsDep, To, requires
from hub.entry.api.roles import Family, Forbidden, Principal, live_aggregates
from hub.entry.api.routes.operations import pipeline_status
from projections.export import MEDIA_TYPES, ExportFormat, export
from projections.reporting import GRAINS

ANALYSTS_READ_RELEASES = (
    "analysts read released months only (GET /v1/reports/outcomes?period=YYYY-MM, /v1/releases); "
    "date ranges, groupings, the funnel and repeat encounters are for operators and auditors"
)
Period = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="a released month (analysts)")]


def live_only(p: Principal) -> None:
    """Refuse an analyst a live aggregate."""
    if not live_aggregates(p):
        raise Forbidden(ANALYSTS_READ_RELEASES)

router = APIRouter(tags=["aggregates"])

AggregatesReader = Annotated[Principal, Depends(requires(Family.AGGREGATES))]
By = Annotated[
    str | None,
    Query(
        pattern="^(" + "|".join(GRAINS) + ")$",
        description="group rows by month, area or intervention: " + ", ".join(GRAINS[2:]),
    ),
]


@router.get("/v1/reports/outcomes")
async def outcomes(
    p: AggregatesReader,
    read_models: ReadModelsDep,
    date_from: From = None,
    date_to: To = None,
    by: By = None,
    period: Period = None,
) -> dict[str, Any]:
    """The outcome report, exactly as ``hub report --json`` prints it (operators, auditors);
    for analysts, the latest release of ``period`` (default: the latest released month)."""
    if live_aggregates(p) and period is None:
        return await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)
    if date_from or date_to or by:
        raise Forbidden(ANALYSTS_READ_RELEASES)
    doc = await read_models.released_report(period=period)
    if doc is None:
        raise HTTPException(404, "no released month" + (f" {period}" if period else " yet"))
    return doc


@router.get("/v1/reports/outcomes/export")
async def outcomes_export(
    p: AggregatesReader,
    read_models: ReadModelsDep,
    fmt: Annotated[ExportFormat, Query(alias="format")],
    date_from: From = None,
    date_to: To = None,
    by: By = None,
    period: Period = None,
) -> Response:
    """The outcome report as a CSV or Parquet file (``hub report --format``): one row per
    published cell, suppressed exactly as ``/v1/reports/outcomes`` — for analysts, the
    latest release of ``period`` (a released month; ranges and groupings refused)."""
    if live_aggregates(p) and period is None:
        doc = await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)
        span = "-".join(str(d) for d in (date_from, date_to) if d is not None) or "all"
        name = f"outcomes-{by or 'total'}-{span}.{fmt}"
    else:
        if date_from or date_to or by:
            raise Forbidden(ANALYSTS_READ_RELEASES)
        released = await read_models.released_report(period=period)
        if released is None:
            raise HTTPException(404, "no released month" + (f" {period}" if period else " yet"))
        doc, name = released, f"outcomes-release-{released['release']}.{fmt}"
    return Response(
        export(doc, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/v1/reports/funnel")
async def funnel(
    p: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    live_only(p)
    return await read_models.referral_funnel(date_from=date_from, date_to=date_to)


@router.get("/v1/reports/repeat-encounters")
async def repeat(
    p: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    live_only(p)
    return await read_models.repeat_encounters(date_from=date_from, date_to=date_to)


@router.get("/v1/releases")
async def releases(_: AggregatesReader, read_models: ReadModelsDep) -> list[dict[str, Any]]:
    """Every release of every closed month (id, period, seq, released_at, vocabulary, code
    version), oldest first."""
    return await read_models.releases()


@router.get("/v1/releases/{release_id}")
async def release(_: AggregatesReader, read_models: ReadModelsDep, release_id: str) -> dict[str, Any]:
    """One release with its records exactly as the outcome topic published them."""
    found = await read_models.release(release_id)
    if found is None:
        raise HTTPException(404, "no such release")
    return found


@router.get("/v1/dashboard")
async def dashboard_data(
    p: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    """What the dashboard draws: report cells by month and by area, the areas of each map
    grain (``areas``), and pipeline health. Analysts see the released months: the latest
    release by area (every grain), each month's latest release over time (no weekly series:
    weeks are not released)."""
    grains = read_models.map_grains()
    if live_aggregates(p):
        by_month = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="month")
        by_area = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="area")
        by_week = await read_models.outcomes_by_week(date_from=date_from, date_to=date_to)
        by_grain = {g: await read_models.outcome_report(date_from=date_from, date_to=date_to, by=g)
                    for g in grains}
        view = dashboard_view(by_month, by_area, by_week, await pipeline_status(read_models))
        return {**view, "areas": area_panels(by_grain, grains)}
    if date_from or date_to:
        raise Forbidden(ANALYSTS_READ_RELEASES)
    latest = await read_models.released_report(period=None)
    if latest is None:
        raise HTTPException(404, "no released month yet")
    by_month = {**latest, "outcomes": await read_models.released_by_month()}
    view = dashboard_view(by_month, latest, {"total": {}, "rows": []}, await pipeline_status(read_models))
    return {**view, "areas": area_panels(dict.fromkeys(grains, latest), grains)}


@router.get("/v1/maps/{grain}")
async def area_map(_: AggregatesReader, read_models: ReadModelsDep, grain: str) -> dict[str, Any]:
    """The county's map of ``grain`` as the dashboard draws it: every area's code, name and
    polygons ([longitude, latitude] rings), the bounding box, and ``unmapped`` — the grain's
    area codes of the calls that the map has no area for (geography only: no counts)."""
    found = await read_models.area_map(grain)
    if found is None:
        raise HTTPException(404, f"no map of {grain!r} is configured (settings areas.maps)")
    return found
