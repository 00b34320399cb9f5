"""``hub api``: serve the read API and dashboard; mint development tokens.

- ``hub api serve [--host H] [--port P]`` runs the API with uvicorn (one process);
- ``hub api token --role R --sub S [--program P] [--ttl SECONDS]`` prints a token signed by
  the development issuer (development only; production tokens come from the county's IdP).
"""

from __future__ import annotations

import asyncio

import typer

from hub.entry.api.auth import AuthError, DevIssuer
from hub.entry.api.roles import PROGRAM_ROLES, Role
from hub.entry.api.server import serve as _serve
from hub.entry.commands import report_failure
from hub.kernel.output import EXIT_USAGE, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="The read API, its dashboard and development tokens.", no_args_is_help=True)


@app.command()
def token(
    role: Role = typer.Option(..., help="hub role the token grants"),
    sub: str = typer.Option(..., help="the user's subject identifier (a staff id, never a patient's)"),
    program: str | None = typer.Option(None, help="program claim (required for clinician / case_manager)"),
    ttl: int = typer.Option(8 * 3600, min=60, max=7 * 24 * 3600, help="lifetime in seconds"),
) -> None:
    """Print a development token (RS256) for ROLE."""
    settings = get_settings()
    if not settings.is_development:
        fail("the development issuer only runs with environment=development", EXIT_USAGE)
    if role in PROGRAM_ROLES and not program:
        fail(f"role {role.value} needs --program", EXIT_USAGE)
    longest = settings.api.max_token_lifetime_seconds
    if ttl > longest:
        fail(f"--ttl {ttl} exceeds api.max_token_lifetime_seconds ({longest})", EXIT_USAGE)
    try:
        issuer = DevIssuer.open(settings)
    except AuthError as exc:
        fail(str(exc), EXIT_USAGE)
    typer.echo(issuer.mint(sub=sub, role=role, program=program, ttl_seconds=ttl))


@app.command()
def serve(
    host: str | None = typer.Option(None, help="bind address (default: settings.api.host)"),
    port: int | None = typer.Option(None, help="port (default: settings.api.port)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the read API and dashboard until interrupted."""

    settings = get_settings()
    try:
        asyncio.run(_serve(settings, host=host, port=port, log_level=log_level))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a clear error, not a traceback, for operators
        raise typer.Exit(report_failure(exc)) from None
