"""The read API's dependencies, provided to the routes (:mod:`hub.entry.api.routes`) through
FastAPI ``Depends``: the objects :func:`hub.entry.api.app.create_app` keeps in
``app.state.hub`` (an :class:`ApiState`), the caller's :class:`Principal` from the bearer
token, role checks and the purpose of use.

Invariants: a route that needs a role declares it as a dependency (``requires(family)``),
so the check runs before the route body; the principal is resolved once per request
(FastAPI caches a dependency within a request), from the ``Authorization`` header only.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from connectors.intake.service import IntakeService
from hub.entry.api.auth import DevIssuer, MissingToken, TokenVerifier
from hub.entry.api.ports import ReadModels
from hub.entry.api.roles import Family, Principal, authorize, normalize_purpose
from hub.kernel.audit import AccessLog
from hub.kernel.settings import Settings


@dataclass(frozen=True)
class ApiState:
    """What the routes of one app read (set once by ``create_app``; no global state)."""

    settings: Settings
    read_models: ReadModels
    access_log: AccessLog
    verifier: TokenVerifier
    dev_issuer: DevIssuer | None = None
    #: the encounter intake (its routes are mounted only when there is one)
    intake: IntakeService | None = None


def api_state(request: Request) -> ApiState:
    """The :class:`ApiState` of the app serving ``request``."""
    state: ApiState = request.app.state.hub
    return state


State = Annotated[ApiState, Depends(api_state)]


def read_models(state: State) -> ReadModels:
    return state.read_models


def access_log(state: State) -> AccessLog:
    return state.access_log


def dev_issuer(state: State) -> DevIssuer:
    """The development issuer; its routes are only mounted when there is one."""
    if state.dev_issuer is None:  # pragma: no cover - routes are not mounted without it
        raise RuntimeError("the development issuer is not configured")
    return state.dev_issuer


ReadModelsDep = Annotated[ReadModels, Depends(read_models)]
AccessLogDep = Annotated[AccessLog, Depends(access_log)]
DevIssuerDep = Annotated[DevIssuer, Depends(dev_issuer)]


async def principal(
    request: Request, state: State, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The caller, from ``Authorization: Bearer <JWT>`` (:class:`AuthError` → 401; no token
    at all: :class:`MissingToken`). Kept in ``request.state.principal`` so that a refusal
    later in the request is logged with who asked."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise MissingToken("missing bearer token")
    p = await state.verifier.authenticate(authorization.split(" ", 1)[1].strip())
    request.state.principal = p
    return p


def requires(family: Family) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, if their role may read ``family`` (else Forbidden → 403)."""

    async def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
        authorize(p, family)
        return p

    return dep


async def purpose_of_use(
    x_purpose_of_use: Annotated[str | None, Header()] = None,
    purpose: Annotated[str | None, Query(description="purpose of use, if no header")] = None,
) -> str:
    """The normalized purpose of use, header first (BadPurpose → 400)."""
    return normalize_purpose(x_purpose_of_use or purpose)


Who = Annotated[Principal, Depends(principal)]
Purpose = Annotated[str, Depends(purpose_of_use)]
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to")]
