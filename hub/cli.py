"""The ``hub`` command: the composition of every command group.

Each group lives in ``hub/commands/<group>.py`` and exposes a ``typer.Typer`` named
``app``. Errors go to stderr with a non-zero exit code; ``--json`` output is stable.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="hub",
    help="Event-sourced integration hub for co-responder programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# command groups, in the order of the design card's `hub` command table
_GROUPS = [
    ("infra", "hub.commands.infra", "app"),
    ("ingest", "hub.commands.ingest", "app"),
    ("connectors", "hub.commands.connectors", "app"),
    ("project", "hub.commands.project", "app"),
    ("report", "hub.commands.report", "app"),
    ("timeline", "hub.commands.timeline", "app"),
    ("replay", "hub.commands.replay", "app"),
    ("erase", "hub.commands.erase", "app"),
    ("seal", "hub.commands.verify", "seal_app"),
    ("verify", "hub.commands.verify", "app"),
    ("deadletters", "hub.commands.deadletters", "app"),
    ("schemas", "hub.commands.schemas", "app"),
    ("simulate", "hub.commands.simulate", "app"),
    ("api", "hub.commands.api", "app"),
    ("demo", "hub.commands.demo", "app"),
]
for _name, _module, _attr in _GROUPS:
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)

def main() -> None:
    app()


if __name__ == "__main__":
    main()
