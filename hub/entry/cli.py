"""The ``hub`` command: the composition of every command group.

Each group lives in ``hub/entry/commands/<group>.py`` (development tooling in
``hub/devtools/commands/<group>.py``) and exposes a ``typer.Typer`` named ``app``; they are
mounted below in the order of the design card's ``hub`` command table. Before any command
runs, the root callback reads the settings and sets up logging once for the process
(:func:`configure_logging`: stderr, ``settings.log_level`` = ``HUB_LOG_LEVEL``, or
``--log-level``). Errors go to stderr with a non-zero exit code; ``--json`` output is stable
(:mod:`hub.kernel.output`). A :class:`hub.kernel.errors.HubError` (invalid settings, a
service unavailable) is one line on stderr with the exit code of
:func:`hub.entry.commands.report_failure` (1, or 75 when a service is unavailable), never
a traceback.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from hub.devtools.commands import demo, infra, simulate
from hub.entry.commands import (
    api,
    connectors,
    db,
    deadletters,
    erase,
    health,
    ingest,
    project,
    replay,
    report,
    report_failure,
    schemas,
    timeline,
    verify,
)
from hub.kernel.errors import HubError
from hub.kernel.logs import configure_logging
from hub.kernel.settings import get_settings

app = typer.Typer(
    name="hub",
    help="Event-sourced integration hub for co-responder programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@app.callback()
def _configure(
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level", case_sensitive=False, help="log level (default: HUB_LOG_LEVEL, else INFO)"
        ),
    ] = None,
) -> None:
    """Event-sourced integration hub for co-responder programs."""
    if log_level is not None:
        # the settings of this process (read once) and of the processes it starts agree
        os.environ["HUB_LOG_LEVEL"] = log_level.value
    try:
        settings = get_settings()
    except HubError as exc:  # ConfigError: names each invalid field and its HUB_ variable
        raise typer.Exit(report_failure(exc)) from None
    configure_logging(settings)


app.add_typer(infra.app, name="infra")
app.add_typer(db.app, name="db")
app.add_typer(ingest.app, name="ingest")
app.add_typer(connectors.app, name="connectors")
app.add_typer(project.app, name="project")
app.add_typer(report.app, name="report")
app.add_typer(timeline.app, name="timeline")
app.add_typer(replay.app, name="replay")
app.add_typer(erase.app, name="erase")
app.add_typer(verify.seal_app, name="seal")
app.add_typer(verify.app, name="verify")
app.add_typer(deadletters.app, name="deadletters")
app.add_typer(health.app, name="health")
app.add_typer(schemas.app, name="schemas")
app.add_typer(simulate.app, name="simulate")
app.add_typer(api.app, name="api")
app.add_typer(demo.app, name="demo")


def main() -> None:
    try:
        app()
    except HubError as exc:
        sys.exit(report_failure(exc))


if __name__ == "__main__":
    main()
