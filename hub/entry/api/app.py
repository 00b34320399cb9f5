"""The read API (FastAPI): timelines, outcome counts, referral funnel, repeat encounters,
dead letters, verification status, pipeline health, the access log, ``/metrics``,
``/healthz`` and the dashboard. OpenAPI is published at ``/openapi.json``.

Composition: :func:`create_app` takes its dependencies (settings, a :class:`ReadModels`,
an :class:`AccessLog`, a :class:`TokenVerifier`, optionally the development issuer), so
tests and ``hub api serve`` build the same app. Every request to a protected route carries
``Authorization: Bearer <JWT>``; the role policy in :mod:`hub.entry.api.roles` decides; every
person-level read — allowed or denied — appends one row to the access log *before* the
response is sent (a read that cannot be logged is refused with 503).
"""

# no `from __future__ import annotations`: FastAPI resolves the route signatures defined
# inside create_app() at definition time (local Annotated aliases).

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.entry.api.auth import AuthError, DevIssuer, TokenVerifier
from hub.entry.api.dashboard import dashboard_view, pipeline_view
from hub.entry.api.ports import ReadModels
from hub.entry.api.roles import (
    BadPurpose,
    Family,
    Forbidden,
    Principal,
    Role,
    allowed_families,
    authorize,
    check_timeline_scope,
    filter_timeline,
    normalize_purpose,
)
from hub.entry.api.scope import scope_from_entries
from hub.kernel import metrics
from hub.kernel.audit import AccessLog, AccessRecord
from hub.kernel.settings import Settings

DASHBOARD_ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
PSEUDONYM_PATTERN = r"^psn_[0-9a-f]{32}$"
INCIDENT_PATTERN = r"^[A-Za-z0-9_.-]+:.+$"


def create_app(
    settings: Settings,
    read_models: ReadModels,
    access_log: AccessLog,
    verifier: TokenVerifier,
    *,
    dev_issuer: DevIssuer | None = None,
) -> FastAPI:
    """Build the API around its dependencies (no global state). The tables it reads and
    the access log are migrated by whoever opened the pool (:mod:`hub.bootstrap`)."""

    app = FastAPI(
        title="Co-responder hub read API",
        version="1",
        description=(
            "Read models of the co-responder integration hub. Bearer JWT (RS256) required except on "
            "/healthz, /metrics and the dashboard shell. Person-level reads need a purpose of use "
            "(`X-Purpose-Of-Use` header or `purpose` query parameter) and are written to the access log."
        ),
    )
    app.state.settings = settings

    # --- errors -------------------------------------------------------------------------
    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(BadPurpose)
    async def _bad_purpose(_: Request, exc: BadPurpose) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # --- dependencies -------------------------------------------------------------------
    async def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("missing bearer token")
        return verifier.verify(authorization.split(" ", 1)[1].strip())

    def requires(family: Family) -> Callable[[Principal], Awaitable[Principal]]:
        async def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
            authorize(p, family)
            return p

        return dep

    async def purpose_of_use(
        x_purpose_of_use: Annotated[str | None, Header()] = None,
        purpose: Annotated[str | None, Query(description="purpose of use, if no header")] = None,
    ) -> str:
        return normalize_purpose(x_purpose_of_use or purpose)

    Who = Annotated[Principal, Depends(principal)]
    Purpose = Annotated[str, Depends(purpose_of_use)]
    From = Annotated[date | None, Query(alias="from")]
    To = Annotated[date | None, Query(alias="to")]

    async def person_level_read(
        p: Principal,
        family: Family,
        subject: str,
        purpose: str,
        fetch: Callable[[], Awaitable[list[dict[str, Any]]]],
        scope_entries: Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]],
    ) -> list[dict[str, Any]]:
        request_id = str(uuid.uuid4())

        async def log(outcome: str, entries: int) -> None:
            try:
                await access_log.append(
                    AccessRecord(p, family.value, subject, purpose, outcome, entries, request_id)
                )
            except (asyncpg.PostgresError, OSError) as exc:
                raise HTTPException(
                    503, "the access log is unavailable; person-level reads are refused"
                ) from exc

        try:
            authorize(p, family)
            entries = await fetch()
            scope = scope_from_entries(await scope_entries(entries))
            check_timeline_scope(p, scope, family)
            visible = filter_timeline(entries, p, scope, datetime.now(UTC))
        except Forbidden:
            await log("denied", 0)
            raise
        await log("allowed", len(visible))
        if not entries:
            raise HTTPException(404, "no such subject in the read models")
        return visible

    # --- public -------------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        try:
            await access_log.pool.fetchval("SELECT 1")
            db = True
        except Exception:
            db = False
        if not db:
            raise HTTPException(503, "database unreachable")
        return {"status": "ok", "database": db}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        await refresh_gauges(read_models)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if dev_issuer is not None:

        @app.get("/.well-known/openid-configuration", tags=["auth"])
        @app.get("/dev-issuer/.well-known/openid-configuration", tags=["auth"])
        async def discovery(request: Request) -> dict[str, Any]:
            return dev_issuer.discovery(str(request.base_url))

        @app.get("/dev-issuer/jwks.json", tags=["auth"])
        async def jwks() -> dict[str, Any]:
            return dev_issuer.jwks()

        @app.get("/dashboard/dev-token", tags=["dashboard"])
        async def dashboard_token() -> dict[str, str]:
            """Development only: an analyst token for the dashboard (aggregates, no PHI)."""
            return {"token": dev_issuer.mint(sub="dashboard", role=Role.ANALYST, ttl_seconds=3600)}

    # --- identity ------------------------------------------------------------------------
    @app.get("/v1/me", tags=["auth"])
    async def me(p: Who) -> dict[str, Any]:
        return {
            "sub": p.sub,
            "role": p.role.value,
            "program": p.program,
            "families": sorted(f.value for f in allowed_families(p.role)),
        }

    # --- timelines (person-level) ---------------------------------------------------------
    @app.get("/v1/incidents/{incident_id}/timeline", tags=["timelines"])
    async def incident_timeline(
        p: Who, purpose: Purpose, incident_id: Annotated[str, Path(pattern=INCIDENT_PATTERN)]
    ) -> dict[str, Any]:
        async def people(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            persons = sorted({e["person"] for e in entries if e.get("person")})
            extra: list[dict[str, Any]] = []
            for person in persons:
                extra.extend(await read_models.person_timeline(person))
            return entries + extra

        visible = await person_level_read(
            p,
            Family.INCIDENT_TIMELINE,
            incident_id,
            purpose,
            lambda: read_models.incident_timeline(incident_id),
            people,
        )
        return {"incident_id": incident_id, "entries": visible}

    @app.get("/v1/persons/{person}/timeline", tags=["timelines"])
    async def person_timeline(
        p: Who, purpose: Purpose, person: Annotated[str, Path(pattern=PSEUDONYM_PATTERN)]
    ) -> dict[str, Any]:
        async def same(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return entries

        visible = await person_level_read(
            p, Family.PERSON_TIMELINE, person, purpose, lambda: read_models.person_timeline(person), same
        )
        return {"person": person, "entries": visible}

    # --- aggregates (de-identified by the read-model queries) ----------------------------------
    AggregatesReader = Annotated[Principal, Depends(requires(Family.AGGREGATES))]
    By = Annotated[str | None, Query(pattern="^(month|area)$", description="group rows by month or area")]

    @app.get("/v1/reports/outcomes", tags=["aggregates"])
    async def outcomes(
        _: AggregatesReader, date_from: From = None, date_to: To = None, by: By = None
    ) -> dict[str, Any]:
        """The outcome report, exactly as ``hub report --json`` prints it."""
        return await read_models.outcome_report(date_from=date_from, date_to=date_to, by=by)

    @app.get("/v1/reports/funnel", tags=["aggregates"])
    async def funnel(_: AggregatesReader, date_from: From = None, date_to: To = None) -> dict[str, Any]:
        return await read_models.referral_funnel(date_from=date_from, date_to=date_to)

    @app.get("/v1/reports/repeat-encounters", tags=["aggregates"])
    async def repeat(_: AggregatesReader, date_from: From = None, date_to: To = None) -> dict[str, Any]:
        return await read_models.repeat_encounters(date_from=date_from, date_to=date_to)

    @app.get("/v1/dashboard", tags=["aggregates"])
    async def dashboard_data(
        _: AggregatesReader, date_from: From = None, date_to: To = None
    ) -> dict[str, Any]:
        """What the dashboard draws: report cells by month and by area, and pipeline health."""
        by_month = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="month")
        by_area = await read_models.outcome_report(date_from=date_from, date_to=date_to, by="area")
        by_week = await read_models.outcomes_by_week(date_from=date_from, date_to=date_to)
        return dashboard_view(by_month, by_area, by_week, await pipeline_status())

    # --- operations ------------------------------------------------------------------------
    async def pipeline_status() -> dict[str, Any]:
        return pipeline_view(
            await read_models.projection_lag(),
            await read_models.dead_letter_counts(),
            await read_models.verification(),
        )

    @app.get("/v1/pipeline", tags=["operations"])
    async def pipeline(_: Annotated[Principal, Depends(requires(Family.PIPELINE))]) -> dict[str, Any]:
        """Projection lag, open dead letters per source family, the last verification."""
        status = await pipeline_status()
        status["projection_partitions"] = (await read_models.projection_lag()).get("partitions", [])
        return status

    @app.get("/v1/deadletters", tags=["operations"])
    async def dead_letters(
        _: Annotated[Principal, Depends(requires(Family.DEADLETTERS))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        source_family: Annotated[str | None, Query(pattern="^(cad|cases|ehr|hub|quarantine)$")] = None,
    ) -> dict[str, Any]:
        return {
            "counts": await read_models.dead_letter_counts(),
            "items": await read_models.dead_letters(limit=limit, source_family=source_family),
        }

    @app.get("/v1/verification", tags=["audit"])
    async def verification(_: Annotated[Principal, Depends(requires(Family.VERIFICATION))]) -> dict[str, Any]:
        result = await read_models.verification()
        return {"ran": result is not None, "result": result}

    @app.get("/v1/access-log", tags=["audit"])
    async def access_log_read(
        _: Annotated[Principal, Depends(requires(Family.ACCESS_LOG))],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        subject: str | None = None,
    ) -> dict[str, Any]:
        return {
            "total": await access_log.count(),
            "items": await access_log.recent(limit=limit, subject=subject),
        }

    # --- dashboard ----------------------------------------------------------------------------
    static_dir = resources.files("hub.entry.api") / "static"

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @app.get("/dashboard/", include_in_schema=False, response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse((static_dir / "index.html").read_text(encoding="utf-8"))

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        """Only the page's own assets are served (an allow-list, no directory listing)."""
        media = DASHBOARD_ASSETS.get(name)
        if media is None:
            raise HTTPException(404, "no such asset")
        return Response(
            (static_dir / name).read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"}
        )

    return app


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
