"""The dashboard page and its assets (no token: the page fetches its data from
``/v1/dashboard`` with a bearer token). Not part of the OpenAPI document."""

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

DASHBOARD_ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
STATIC_DIR = resources.files("hub.entry.api") / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/")


@router.get("/dashboard/", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))


@router.get("/dashboard/static/{name}")
async def dashboard_asset(name: str) -> Response:
    """Only the page's own assets are served (an allow-list, no directory listing)."""
    media = DASHBOARD_ASSETS.get(name)
    if media is None:
        raise HTTPException(404, "no such asset")
    return Response((STATIC_DIR / name).read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"})
