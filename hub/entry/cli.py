"""The ``hub`` command: the composition of every command group.

Each group lives in ``hub/entry/commands/<group>.py`` and exposes a ``typer.Typer`` named
``app``. Errors go to stderr with a non-zero exit code; ``--json`` output is stable. A
:class:`hub.kernel.errors.HubError` that reaches :func:`main` (invalid settings, a service
unavailable) is one line on stderr with the exit code of
:func:`hub.entry.commands.report_failure` (1, or 75 when a service is unavailable), never
a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from hub.entry.commands import report_failure
from hub.kernel.errors import HubError

app = typer.Typer(
    name="hub",
    help="Event-sourced integration hub for co-responder programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# command groups, in the order of the design card's `hub` command table
_GROUPS = [
    ("infra", "hub.devtools.commands.infra", "app"),
    ("db", "hub.entry.commands.db", "app"),
    ("ingest", "hub.entry.commands.ingest", "app"),
    ("connectors", "hub.entry.commands.connectors", "app"),
    ("project", "hub.entry.commands.project", "app"),
    ("report", "hub.entry.commands.report", "app"),
    ("timeline", "hub.entry.commands.timeline", "app"),
    ("replay", "hub.entry.commands.replay", "app"),
    ("erase", "hub.entry.commands.erase", "app"),
    ("seal", "hub.entry.commands.verify", "seal_app"),
    ("verify", "hub.entry.commands.verify", "app"),
    ("deadletters", "hub.entry.commands.deadletters", "app"),
    ("schemas", "hub.entry.commands.schemas", "app"),
    ("simulate", "hub.devtools.commands.simulate", "app"),
    ("api", "hub.entry.commands.api", "app"),
    ("demo", "hub.devtools.commands.demo", "app"),
]
for _name, _module, _attr in _GROUPS:
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)


def main() -> None:
    try:
        app()
    except HubError as exc:
        sys.exit(report_failure(exc))


if __name__ == "__main__":
    main()
