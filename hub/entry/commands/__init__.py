"""Command groups of the ``hub`` CLI, one module per group, and their shared failure
reporting.

Exit codes: 0 success; 1 a permanent failure (bad input or configuration, a refused
operation: trying again gives the same answer); 75 (``EX_TEMPFAIL`` of sysexits.h) a
service is unavailable — Kafka, PostgreSQL, the key store — so the same command may
succeed later. Either way the error is one line on stderr, never a traceback. Every group
prints through :mod:`hub.kernel.output` (``emit_json``, ``fail``), where the codes live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from hub.kernel.deadletters import describe_failure
from hub.kernel.errors import is_retriable
from hub.kernel.output import EXIT_FAILURE, EXIT_UNAVAILABLE, echo_error

T = TypeVar("T")


def report_failure(exc: BaseException, failure: str | None = None) -> int:
    """Write ``error: [<failure>: ]<Type>: <message>`` on stderr — for a retriable error
    (:func:`hub.kernel.errors.is_retriable`) ``error: [<failure>: ]service unavailable, try
    again later: …`` — and return the exit code (:data:`EXIT_UNAVAILABLE` or
    :data:`EXIT_FAILURE`). A validation error is shown without the input values it quotes
    (see :func:`describe_failure`)."""
    what = f"{failure}: " if failure else ""
    if is_retriable(exc):
        echo_error(f"{what}service unavailable, try again later: {describe_failure(exc, 1000)}")
        return EXIT_UNAVAILABLE
    echo_error(f"{what}{describe_failure(exc, 1000)}")
    return EXIT_FAILURE


def run_or_exit(main: Coroutine[Any, Any, T], failure: str) -> T:
    """``asyncio.run(main)``; an exception becomes a one-line message on stderr and the
    exit code of :func:`report_failure` (75 when a service is unavailable, else 1): a clear
    message for operators, not a traceback."""

    try:
        return asyncio.run(main)
    except Exception as exc:  # every failure becomes a message and an exit code
        raise typer.Exit(report_failure(exc, failure)) from exc
