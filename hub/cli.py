"""The ``hub`` command: the composition of every command group.

Each group lives in ``hub/commands/<group>.py`` and exposes a ``typer.Typer`` named
``app``. Errors go to stderr with a non-zero exit code; ``--json`` output is stable.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hub",
    help="Event-sourced integration hub for co-responder programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# command groups (one line each; keep sorted)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
