"""``/healthz`` and ``/metrics`` (no token): liveness of the database and the Prometheus
exposition, with the gauges that mirror PostgreSQL state refreshed on every scrape.

``/healthz`` also says whether the log takes appends (:func:`hub.kernel.topics.append_health`):
with brokers down or too few in-sync replicas it answers 200 (the API still serves reads)
with ``"status": "degraded"`` and ``"log_appends": {"available": false, "problems": […]}``;
503 only when the database is unreachable."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.entry.api.deps import AccessLogDep, ReadModelsDep, State
from hub.entry.api.ports import ReadModels
from hub.kernel import metrics
from hub.kernel.topics import append_health

#: how long /healthz waits for the cluster's metadata (a probe must answer quickly)
APPEND_PROBE_S = 2.0

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(access_log: AccessLogDep, state: State) -> dict[str, Any]:
    try:
        await access_log.pool.fetchval("SELECT 1")
        db = True
    except Exception:
        db = False
    if not db:
        raise HTTPException(503, "database unreachable")
    appends = await append_health(state.settings, APPEND_PROBE_S)
    metrics.LOG_BROKER_AVAILABLE.set(1 if appends.available else 0)
    return {"status": "ok" if appends.available else "degraded", "database": db,
            "log_appends": appends.to_dict()}


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(read_models: ReadModelsDep) -> Response:
    await refresh_gauges(read_models)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(read_models: ReadModels) -> None:
    """Mirror state that lives in PostgreSQL (verification, dead letters, lag) into gauges."""
    result = await read_models.verification()
    if result is not None:
        metrics.VERIFY_OK.set(1 if result.get("ok") else 0)
        metrics.VERIFY_BREAKS.set(int(result.get("breaks") or 0))
        metrics.VERIFY_ORPHAN_COPIES.set(len(result.get("orphan_copies") or ()))
        checked = result.get("checked_at")
        if isinstance(checked, datetime):
            metrics.VERIFY_LAST_RUN.set(checked.timestamp())
        elif isinstance(checked, str):
            metrics.VERIFY_LAST_RUN.set(datetime.fromisoformat(checked).timestamp())
    for family, count in (await read_models.dead_letter_counts()).items():
        metrics.DEADLETTERS_STORED.labels(source_family=family).set(count)
