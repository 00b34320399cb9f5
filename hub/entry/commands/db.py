"""``hub db migrate``: apply every migration set to the namespace's schemas as the OWNER
role and grant the runtime role its privileges (:func:`hub.kernel.db.grant_runtime`).

In production this is the migrate job (the only place the owner's credentials live,
``HUB_POSTGRES__DSN``); the processes run with ``postgres.migrations: check`` and only the
runtime role's URL (``HUB_POSTGRES__RUNTIME_DSN``), and refuse to start until it has run.
In development every process applies the migrations itself, so this is optional."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hub.bootstrap import migrate_all
from hub.entry.commands import run_or_exit
from hub.kernel.db import open_pool, runtime_grantee
from hub.kernel.settings import get_settings

app = typer.Typer(help="Database administration (as the owner role).")


@app.command("migrate")
def migrate(
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Apply every migration and the runtime role's grants (idempotent)."""
    settings = get_settings()

    async def go() -> None:
        async with open_pool(settings, role="owner", max_size=1) as pool:
            await migrate_all(pool, settings)

    run_or_exit(go(), "migration failed")
    schemas = [settings.core_schema, settings.postgres.schema_]
    result = {
        "schemas": schemas,
        "owner": settings.postgres.user,
        "runtime_role": runtime_grantee(settings),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        grants = f"; runtime role {result['runtime_role']} granted" if result["runtime_role"] else ""
        typer.echo(f"migrated {', '.join(schemas)} as {result['owner']}{grants}")
