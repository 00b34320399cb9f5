"""``hub schemas export DIR``: write the contract (JSON Schema per event type, envelope,
dead letter, registered extra messages, and the AsyncAPI 3.0 topic catalogue) under DIR.
The committed copy is ``schemas/`` itself: ``hub schemas export schemas``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from schemas.export import write

app = typer.Typer(help="Export the event contract (JSON Schema, AsyncAPI).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Event contract tools."""


@app.command()
def export(directory: Annotated[Path, typer.Argument(metavar="DIR", help="output directory")]) -> None:
    """Write jsonschema/*.json and asyncapi.yaml under DIR."""
    written = write(directory)
    typer.echo(f"wrote {len(written)} files under {directory}")
