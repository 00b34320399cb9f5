"""Pipeline operations: projection lag, open dead letters, the last verification."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hub.entry.api.dashboard import pipeline_view
from hub.entry.api.deps import ReadModelsDep, requires
from hub.entry.api.ports import ReadModels
from hub.entry.api.roles import Family, Principal

router = APIRouter(tags=["operations"])


async def pipeline_status(read_models: ReadModels) -> dict[str, Any]:
    """The pipeline card of ``/v1/pipeline`` and ``/v1/dashboard``."""
    return pipeline_view(
        await read_models.projection_lag(),
        await read_models.dead_letter_counts(),
        await read_models.verification(),
    )


@router.get("/v1/pipeline")
async def pipeline(
    _: Annotated[Principal, Depends(requires(Family.PIPELINE))], read_models: ReadModelsDep
) -> dict[str, Any]:
    """Projection lag, open dead letters per source family, the last verification."""
    status = await pipeline_status(read_models)
    status["projection_partitions"] = (await read_models.projection_lag()).get("partitions", [])
    return status


@router.get("/v1/deadletters")
async def dead_letters(
    _: Annotated[Principal, Depends(requires(Family.DEADLETTERS))],
    read_models: ReadModelsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    source_family: Annotated[str | None, Query(pattern="^(cad|cases|ehr|hub)$")] = None,
) -> dict[str, Any]:
    return {
        "counts": await read_models.dead_letter_counts(),
        "items": await read_models.dead_letters(limit=limit, source_family=source_family),
    }
