"""Audit reads: the last ``hub verify`` result and the access log itself."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hub.entry.api.deps import AccessLogDep, ReadModelsDep, requires
from hub.entry.api.roles import FILTER_PATTERN, Family, Principal

router = APIRouter(tags=["audit"])


@router.get("/v1/verification")
async def verification(
    _: Annotated[Principal, Depends(requires(Family.VERIFICATION))], read_models: ReadModelsDep
) -> dict[str, Any]:
    result = await read_models.verification()
    return {"ran": result is not None, "result": result}


@router.get("/v1/access-log")
async def access_log_read(
    _: Annotated[Principal, Depends(requires(Family.ACCESS_LOG))],
    access_log: AccessLogDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    subject: Annotated[str | None, Query(pattern=FILTER_PATTERN)] = None,
) -> dict[str, Any]:
    return {
        "total": await access_log.count(),
        "items": await access_log.recent(limit=limit, subject=subject),
    }
