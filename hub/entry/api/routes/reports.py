"""Aggregates (de-identified by the read-model queries, small cells suppressed): the
outcome report, the referral funnel, repeat encounters, and what the dashboard draws."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from hub.entry.api.dashboard import dashboard_view
from hub.entry.api.deps import From, ReadModelsDep, To, requires
from hub.entry.api.roles import Family, Principal
from hub.entry.api.routes.operations import pipeline_status
from projections.export import MEDIA_TYPES, ExportFormat, export
from projections.reporting import GRAINS

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
    _: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None, by: By = None
) -> dict[str, Any]:
    """The outcome report, exactly as ``hub report --json`` prints it."""
    return await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)


@router.get("/v1/reports/outcomes/export")
async def outcomes_export(
    _: AggregatesReader,
    read_models: ReadModelsDep,
    fmt: Annotated[ExportFormat, Query(alias="format")],
    date_from: From = None,
    date_to: To = None,
    by: By = None,
) -> Response:
    """The outcome report as a CSV or Parquet file (``hub report --format``): one row per
    published cell, suppressed exactly as ``/v1/reports/outcomes``."""
    doc = await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)
    span = "-".join(str(d) for d in (date_from, date_to) if d is not None) or "all"
    name = f"outcomes-{by or 'total'}-{span}.{fmt}"
    return Response(
        export(doc, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/v1/reports/funnel")
async def funnel(
    _: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    return await read_models.referral_funnel(date_from=date_from, date_to=date_to)


@router.get("/v1/reports/repeat-encounters")
async def repeat(
    _: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    return await read_models.repeat_encounters(date_from=date_from, date_to=date_to)


@router.get("/v1/dashboard")
async def dashboard_data(
    _: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None
) -> dict[str, Any]:
    """What the dashboard draws: report cells by month and by area, and pipeline health."""
    by_month = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="month")
    by_area = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="area")
    by_week = await read_models.outcomes_by_week(date_from=date_from, date_to=date_to)
    return dashboard_view(by_month, by_area, by_week, await pipeline_status(read_models))
