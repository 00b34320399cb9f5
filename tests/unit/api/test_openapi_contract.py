"""The read API's surface does not drift: every path, method, operation id, tag, parameter
(name, location, required, schema) and response code of the OpenAPI document, and every
route outside it (the dashboard shell and assets), equals the committed fixture
``tests/data/api/openapi-paths.json`` — with and without the development issuer.

Regenerate the fixture only for a deliberate API change::

    python -m tests.unit.api.test_openapi_contract
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.kernel.settings import PROJECT_ROOT, Settings

FIXTURE = PROJECT_ROOT / "tests" / "data" / "api" / "openapi-paths.json"


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
    routes = sorted(
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods)
    )
    return {"info": doc["info"], "paths": paths, "routes": routes}


def current(state_dir: Path) -> dict[str, Any]:
    """Today's surface with the development issuer's routes and without them."""
    settings = Settings(state_dir=state_dir, environment="development")
    issuer = DevIssuer.open(settings)
    verifier = TokenVerifier(settings, jwks=issuer.jwks())
    # routes are registered at construction; no dependency is called
    return {
        "with_dev_issuer": surface(create_app(settings, None, None, verifier, dev_issuer=issuer)),  # type: ignore[arg-type]
        "without_dev_issuer": surface(create_app(settings, None, None, verifier)),  # type: ignore[arg-type]
    }


def test_openapi_paths_methods_parameters_and_responses_are_unchanged(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert current(tmp_path) == expected


if __name__ == "__main__":  # regenerate the fixture (a deliberate API change only)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        FIXTURE.write_text(json.dumps(current(Path(tmp)), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {FIXTURE}\n")
