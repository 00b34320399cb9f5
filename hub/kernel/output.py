"""How every ``hub`` command talks to the terminal: one JSON format on stdout, one error
format on stderr, one way to exit on an error. (Logging, the other stderr stream, is
:mod:`hub.kernel.logs`.) It sits in the kernel so that the production command groups
(``hub.entry.commands``) and the development ones (``hub.devtools.commands``) share it.

- :func:`emit_json` — ``--json`` documents (indented, stable bytes) and JSON lines of
  long-running commands (``compact=True``), flushed at once;
- :func:`fail` — ``error: <message>`` on stderr (:func:`echo_error`) and a non-zero exit
  code: :data:`EXIT_FAILURE` unless told, :data:`EXIT_USAGE` for bad arguments,
  :data:`EXIT_UNAVAILABLE` when a service is down (see
  :func:`hub.entry.commands.report_failure`, which picks 1 or 75 for an exception).

A command whose run completed but whose verdict is negative (``hub verify`` found a break,
``hub infra status`` is unhealthy, ``--strict`` saw dead letters) prints its normal output
and raises ``typer.Exit(code)`` with its documented code; that is not an error message.
Nothing printed here may carry PHI: messages name ids, counts and field names only.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer

EXIT_FAILURE = 1  # a permanent failure: the same command fails the same way again
EXIT_USAGE = 2  # bad arguments
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL of sysexits.h: a service is unavailable, try again later
EXIT_FORCED = 70  # EX_SOFTWARE: a long-running command did not stop in time after a signal


def json_text(obj: Any, *, sort_keys: bool = False, compact: bool = False) -> str:
    """``obj`` as the CLI prints it (pure): two-space indentation, or one line when
    ``compact``; keys in the object's order unless ``sort_keys``; ASCII-only."""
    return json.dumps(obj, indent=None if compact else 2, sort_keys=sort_keys)


def emit_json(obj: Any, *, sort_keys: bool = False, compact: bool = False) -> None:
    """Print ``obj`` on stdout as :func:`json_text` renders it, with a newline (flushed)."""
    typer.echo(json_text(obj, sort_keys=sort_keys, compact=compact))


def echo_error(message: str) -> None:
    """Print ``error: <message>`` on stderr (one line for operators, never a traceback)."""
    typer.echo(f"error: {message}", err=True)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with ``code`` (never 0)."""
    if code == 0:
        raise ValueError("fail() needs a non-zero exit code")
    echo_error(message)
    raise typer.Exit(code)
