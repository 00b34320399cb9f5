"""The development token issuer's routes (mounted only when ``create_app`` gets an issuer,
i.e. in development on a loopback bind; see :func:`hub.entry.api.server.routed_dev_issuer`):
OpenID discovery, the JWKS, and an analyst token for the dashboard."""

from typing import Any

from fastapi import APIRouter, Request

from hub.entry.api.deps import DevIssuerDep
from hub.entry.api.roles import Role

router = APIRouter()


@router.get("/.well-known/openid-configuration", tags=["auth"])
@router.get("/dev-issuer/.well-known/openid-configuration", tags=["auth"])
async def discovery(request: Request, dev_issuer: DevIssuerDep) -> dict[str, Any]:
    return dev_issuer.discovery(str(request.base_url))


@router.get("/dev-issuer/jwks.json", tags=["auth"])
async def jwks(dev_issuer: DevIssuerDep) -> dict[str, Any]:
    return dev_issuer.jwks()


@router.get("/dashboard/dev-token", tags=["dashboard"])
async def dashboard_token(dev_issuer: DevIssuerDep) -> dict[str, str]:
    """Development only: an analyst token for the dashboard (aggregates, no PHI)."""
    return {"token": dev_issuer.mint(sub="dashboard", role=Role.ANALYST, ttl_seconds=3600)}
