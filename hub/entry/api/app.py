"""The read API (FastAPI): timelines, outcome counts, referral funnel, repeat encounters,
dead letters, verification status, pipeline health, the access log, ``/metrics``,
``/healthz`` and the dashboard. OpenAPI is published at ``/openapi.json``.

Composition: :func:`create_app` takes its dependencies (settings, a :class:`ReadModels`,
an :class:`AccessLog`, a :class:`TokenVerifier`, optionally the development issuer), keeps
them in ``app.state.hub`` (:class:`hub.entry.api.deps.ApiState`) and mounts the routers of
:mod:`hub.entry.api.routes`, so tests and ``hub api serve`` build the same app. Every
request to a protected route carries ``Authorization: Bearer <JWT>``; the role policy in
:mod:`hub.entry.api.roles` decides; every person-level read — allowed or denied — appends
one row to the access log *before* the response is sent (a read that cannot be logged is
refused with 503).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.entry.api.auth import AuthError, DevIssuer, TokenVerifier
from hub.entry.api.deps import ApiState
from hub.entry.api.ports import ReadModels
from hub.entry.api.roles import BadPurpose, Forbidden
from hub.entry.api.routes import audit, dashboard, health, identity, operations, reports, timelines
from hub.entry.api.routes import dev_issuer as dev_issuer_routes
from hub.kernel.audit import AccessLog
from hub.kernel.settings import Settings

DESCRIPTION = (
    "Read models of the co-responder integration hub. Bearer JWT (RS256) required except on "
    "/healthz, /metrics and the dashboard shell. Person-level reads need a purpose of use "
    "(`X-Purpose-Of-Use` header or `purpose` query parameter) and are written to the access log."
)


async def _auth_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def _forbidden(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=403)


async def _bad_purpose(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


def create_app(
    settings: Settings,
    read_models: ReadModels,
    access_log: AccessLog,
    verifier: TokenVerifier,
    *,
    dev_issuer: DevIssuer | None = None,
) -> FastAPI:
    """Build the API around its dependencies (no global state). The tables it reads and
    the access log are migrated by whoever opened the pool (:mod:`hub.bootstrap`). The
    development issuer's routes exist only when ``dev_issuer`` is given."""
    app = FastAPI(title="Co-responder hub read API", version="1", description=DESCRIPTION)
    app.state.hub = ApiState(settings, read_models, access_log, verifier, dev_issuer)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadPurpose, _bad_purpose)
    app.include_router(health.router)
    if dev_issuer is not None:
        app.include_router(dev_issuer_routes.router)
    for family in (identity, timelines, reports, operations, audit, dashboard):
        app.include_router(family.router)
    return app
