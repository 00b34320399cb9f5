"""The browser pages and their assets — the dashboard (it fetches ``/v1/dashboard``) and
the encounter form (it calls ``/v1/intake``) — served without a token: each page sends
its bearer token with its API calls. Not part of the OpenAPI document."""

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

DASHBOARD_ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "map.js": "text/javascript; charset=utf-8",
}
INTAKE_ASSETS = {
    "intake.css": "text/css; charset=utf-8",
    "intake.js": "text/javascript; charset=utf-8",
}
STATIC_DIR = resources.files("hub.entry.api") / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@router.get("/dashboard/", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))


def _asset(assets: dict[str, str], name: str) -> Response:
    """Only a page's own assets are served (an allow-list, no directory listing)."""
    media = assets.get(name)
    if media is None:
        raise HTTPException(404, "no such asset")
    return Response((STATIC_DIR / name).read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/static/{name}")
async def dashboard_asset(name: str) -> Response:
    return _asset(DASHBOARD_ASSETS, name)


@router.get("/intake/", response_class=HTMLResponse)
async def intake_form() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "intake.html").read_text(encoding="utf-8"))


@router.get("/intake/static/{name}")
async def intake_asset(name: str) -> Response:
    return _asset(INTAKE_ASSETS, name)
