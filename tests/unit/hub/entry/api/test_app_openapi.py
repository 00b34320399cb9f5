"""The read API's surface does not drift: every path, method, operation id, tag, parameter
(name, location, required, schema) and response code of the OpenAPI document, and every
route outside it (the dashboard shell and assets), equals the committed fixture
``tests/data/api/openapi-paths.json`` — with and without the development issuer, and with
the encounter intake.

Regenerate the fixture only for a deliberate API change::

    python -m tests.unit.hub.entry.api.test_app_openapi
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

try:  # FastAPI >= 0.137.2: included routers are nodes of app.routes, flattened by this
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI copies the routes into app.routes

    def iter_route_contexts(routes):  # type: ignore[no-untyped-def]
        return iter(routes)


from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.kernel.settings import PROJECT_ROOT, Settings

FIXTURE = PROJECT_ROOT / "tests" / "data" / "api" / "openapi-paths.json"


def route_table(app: FastAPI) -> list[str]:
    """``"METHOD /path"`` of every path operation of ``app``, in or out of the OpenAPI
    document (routers flattened), sorted."""
    return sorted(
        f"{method} {ctx.path}"
        for ctx in iter_route_contexts(app.routes)
        if isinstance(getattr(ctx, "original_route", ctx), APIRoute)
        for method in sorted(ctx.methods)
    )


def surface(app: FastAPI) -> dict[str, Any]:
    """The parts of ``app`` a client relies on, as plain JSON (pure)."""
    doc = app.openapi()
    paths: dict[str, Any] = {}
    for path, operations in sorted(doc["paths"].items()):
        paths[path] = {
            method: {
                "operationId": op.get("operationId"),
                "tags": op.get("tags", []),
                "parameters": [
                    {k: p.get(k) for k in ("name", "in", "required", "schema")}
                    for p in op.get("parameters", [])
                ],
                "responses": sorted(op.get("responses", {})),
            }
            for method, op in sorted(operations.items())
        }
    return {"info": doc["info"], "paths": paths, "routes": route_table(app)}


def current(state_dir: Path) -> dict[str, Any]:
    """Today's surface with the development issuer's routes and without them."""
    settings = Settings(state_dir=state_dir, environment="development")
    issuer = DevIssuer.open(settings)
    verifier = TokenVerifier(settings, jwks=issuer.jwks())
    # routes are registered at construction; no dependency is called
    return {
        "with_dev_issuer": surface(create_app(settings, None, None, verifier, dev_issuer=issuer)),  # type: ignore[arg-type]
        "without_dev_issuer": surface(create_app(settings, None, None, verifier)),  # type: ignore[arg-type]
        "with_intake": surface(create_app(settings, None, None, verifier, intake_service=object())),  # type: ignore[arg-type]
    }


def test_openapi_paths_methods_parameters_and_responses_are_unchanged(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert current(tmp_path) == expected


if __name__ == "__main__":  # regenerate the fixture (a deliberate API change only)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        FIXTURE.write_text(json.dumps(current(Path(tmp)), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {FIXTURE}\n")
