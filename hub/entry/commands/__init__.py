"""Command groups of the ``hub`` CLI, one module per group, and their shared runner."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from hub.kernel.deadletters import describe_failure

T = TypeVar("T")


def run_or_exit(main: Coroutine[Any, Any, T], failure: str) -> T:
    """``asyncio.run(main)``; an exception becomes ``error: <failure>: <Type>: <message>`` on
    stderr and exit code 1 (a clear message for operators, not a traceback). A validation
    error is shown without the input values it quotes (see :func:`describe_failure`)."""

    try:
        return asyncio.run(main)
    except Exception as exc:
        typer.echo(f"error: {failure}: {describe_failure(exc, 1000)}", err=True)
        raise typer.Exit(1) from exc
