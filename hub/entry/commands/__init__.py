"""Command groups of the ``hub`` CLI, one module per group, and their shared failure
reporting.

Exit codes: 0 success; 1 a permanent failure (bad input or configuration, a refused
operation: trying again gives the same answer); 75 (``EX_TEMPFAIL`` of sysexits.h) a
service is unavailable — Kafka, PostgreSQL, the key store — so the same command may
succeed later. Either way the error is one line on stderr, never a traceback. A long-running command
(``hub project``, ``hub connectors run``) that does not end within ``stop_grace_s`` of a
SIGTERM / SIGINT, or gets a second one, exits at once with :data:`EXIT_FORCED` (70,
``EX_SOFTWARE``): see :func:`stop_on_signals`. Every group
prints through :mod:`hub.kernel.output` (``emit_json``, ``fail``), where the codes live.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from hub.kernel.deadletters import describe_failure
from hub.kernel.errors import is_retriable
from hub.kernel.output import EXIT_FAILURE, EXIT_FORCED, EXIT_UNAVAILABLE, echo_error

T = TypeVar("T")


def _force_exit(what: str, why: str) -> None:
    sys.stderr.write(f"error: {what}: {why}; exiting now\n")
    sys.stderr.flush()
    os._exit(EXIT_FORCED)


def stop_on_signals(stop: asyncio.Event, what: str, grace_s: float) -> None:
    """Install SIGINT / SIGTERM handlers on the running loop: the first sets ``stop`` (the
    command stops in order) and starts a watchdog; if the process is still running
    ``grace_s`` seconds later, or a second signal arrives, it exits at once with
    :data:`EXIT_FORCED`. The watchdog is a daemon thread, so a blocked event loop or a
    library waiting forever (faust's ``wait_empty``, issue 13) cannot keep the process
    alive: SIGTERM always ends the command within a bound."""
    loop = asyncio.get_running_loop()
    state = {"signalled": False}

    def on_signal(sig: signal.Signals) -> None:
        if state["signalled"]:
            _force_exit(what, f"second {sig.name}")
        state["signalled"] = True
        stop.set()
        why = f"did not stop within {grace_s:g}s of {sig.name}"
        timer = threading.Timer(grace_s, _force_exit, (what, why))
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


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
