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

# command groups (one line each; keep sorted)
app.add_typer(importlib.import_module("hub.commands.project").app, name="project")
app.add_typer(importlib.import_module("hub.commands.replay").app, name="replay")
app.add_typer(importlib.import_module("hub.commands.report").app, name="report")
app.add_typer(importlib.import_module("hub.commands.timeline").app, name="timeline")
app.add_typer(importlib.import_module("hub.commands.api").app, name="api")
app.add_typer(importlib.import_module("hub.commands.demo").app, name="demo")
app.add_typer(importlib.import_module("hub.commands.deadletters").app, name="deadletters")
app.add_typer(importlib.import_module("hub.commands.verify").seal_app, name="seal")
app.add_typer(importlib.import_module("hub.commands.schemas").app, name="schemas")
app.add_typer(importlib.import_module("hub.commands.verify").app, name="verify")
app.add_typer(importlib.import_module("hub.commands.infra").app, name="infra")
app.add_typer(importlib.import_module("hub.commands.ingest").app, name="ingest")
app.add_typer(importlib.import_module("hub.commands.connectors").app, name="connectors")
app.add_typer(importlib.import_module("hub.commands.simulate").app, name="simulate")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
