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
refused with 503). Refused and failed person-level reads are logged too, with the same
answer as before (:func:`log_refusal`): ``refused`` for no or bad token (sub
``anonymous``), no or bad purpose and a malformed id (subject ``<invalid>``), ``error`` when
the read itself failed; the reason is a fixed phrase or the policy's message, never the
caller's input (:func:`hub.entry.api.roles.loggable_subject`).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from connectors.intake.service import IntakeService
from hub.entry.api.auth import AuthError, DevIssuer, MissingToken, TokenVerifier
from hub.entry.api.deps import ApiState
from hub.entry.api.ports import ReadModels
from hub.entry.api.roles import (
    INVALID_SUBJECT,
    BadPurpose,
    Family,
    Forbidden,
    UnknownPurpose,
    loggable_purpose,
    loggable_subject,
)
from hub.entry.api.routes import (
    audit,
    dashboard,
    health,
    identity,
    intake,
    operations,
    reports,
    timelines,
    worklist,
)
from hub.entry.api.routes import dev_issuer as dev_issuer_routes
from hub.entry.api.routes.timelines import AUDIT_ERRORS
from hub.kernel import metrics
from hub.kernel.audit import ANONYMOUS, AccessLog, AccessRecord, Actor
from hub.kernel.settings import Settings

DESCRIPTION = (
    "Read models of the co-responder integration hub. Bearer JWT (RS256) required except on "
    "/healthz, /metrics and the dashboard shell. Person-level reads need a purpose of use "
    "(`X-Purpose-Of-Use` header or `purpose` query parameter) and are written to the access log."
)


#: the person-level routes: path → (family, name of the path parameter holding the subject)
PERSON_ROUTES: dict[str, tuple[Family, str | None]] = {
    "/v1/incidents/{incident_id}/timeline": (Family.INCIDENT_TIMELINE, "incident_id"),
    "/v1/persons/{person}/timeline": (Family.PERSON_TIMELINE, "person"),
    "/v1/worklist/frequent-users": (Family.WORKLIST, None),  # subject: the program's worklist
}
logger = logging.getLogger(__name__)


async def log_refusal(request: Request, reason: str) -> None:
    """Append a ``refused`` row when ``request`` is a person-level read (who: the verified
    principal if the token was checked, else anonymous; the subject and purpose only when
    well-formed). The answer does not depend on it: a refusal that cannot be logged is
    counted (``hub_api_access_log_failures_total``) and logged as a warning."""
    route = PERSON_ROUTES.get(getattr(request.scope.get("route"), "path", ""))
    if route is None:
        return
    family, param = route
    who: Actor = getattr(request.state, "principal", None) or ANONYMOUS
    if param is None:
        program = getattr(who, "program", None)
        subject = f"worklist:{program}" if program else INVALID_SUBJECT
    else:
        subject = loggable_subject(family, request.path_params.get(param))
    raw_purpose = request.headers.get("x-purpose-of-use") or request.query_params.get("purpose")
    record = AccessRecord(
        who,
        family.value,
        subject,
        loggable_purpose(raw_purpose),
        "refused",
        0,
        str(uuid.uuid4()),
        reason,
    )
    state: ApiState = request.app.state.hub
    try:
        await state.access_log.append(record)
    except AUDIT_ERRORS as exc:
        metrics.ACCESS_LOG_FAILURES.inc()
        logger.warning("a refused read could not be logged (%s)", type(exc).__name__)


async def _auth_error(request: Request, exc: Exception) -> JSONResponse:
    await log_refusal(request, "no token" if isinstance(exc, MissingToken) else "bad token")
    return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def _forbidden(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=403)


async def _bad_purpose(request: Request, exc: Exception) -> JSONResponse:
    await log_refusal(request, "bad purpose" if isinstance(exc, UnknownPurpose) else "no purpose")
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    await log_refusal(request, "bad id")
    assert isinstance(exc, RequestValidationError)
    return await request_validation_exception_handler(request, exc)


def create_app(
    settings: Settings,
    read_models: ReadModels,
    access_log: AccessLog,
    verifier: TokenVerifier,
    *,
    dev_issuer: DevIssuer | None = None,
    intake_service: IntakeService | None = None,
) -> FastAPI:
    """Build the API around its dependencies (no global state). The tables it reads and
    the access log are migrated by whoever opened the pool (:mod:`hub.bootstrap`). The
    development issuer's routes exist only when ``dev_issuer`` is given, the encounter
    intake's only when ``intake_service`` is."""
    app = FastAPI(title="Co-responder hub read API", version="1", description=DESCRIPTION)
    app.state.hub = ApiState(settings, read_models, access_log, verifier, dev_issuer, intake_service)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadPurpose, _bad_purpose)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.include_router(health.router)
    if dev_issuer is not None:
        app.include_router(dev_issuer_routes.router)
    if intake_service is not None:
        app.include_router(intake.router)
    for family in (identity, timelines, worklist, reports, operations, audit, dashboard):
        app.include_router(family.router)
    return app
