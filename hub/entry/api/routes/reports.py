"""Aggregates (de-identified by the read-model queries, small cells suppressed): the
outcome report, the referral funnel, repeat encounters, and what the dashboard draws."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hub.entry.api.dashboard import dashboard_view
from hub.entry.api.deps import From, ReadModelsDep, To, requires
from hub.entry.api.roles import Family, Principal
from hub.entry.api.routes.operations import pipeline_status

router = APIRouter(tags=["aggregates"])

AggregatesReader = Annotated[Principal, Depends(requires(Family.AGGREGATES))]
By = Annotated[str | None, Query(pattern="^(month|area)$", description="group rows by month or area")]


@router.get("/v1/reports/outcomes")
async def outcomes(
    _: AggregatesReader, read_models: ReadModelsDep, date_from: From = None, date_to: To = None, by: By = None
) -> dict[str, Any]:
    """The outcome report, exactly as ``hub report --json`` prints it."""
    return await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)


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
