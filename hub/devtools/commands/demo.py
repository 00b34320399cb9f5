"""``hub demo``: the whole hub on a simulated county, ending with the outcome report and
the dashboard URL (see :mod:`hub.devtools.demo`)."""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated

import typer

from hub.devtools.demo import DemoOptions, run
from hub.kernel.logs import configure_logging
from hub.kernel.output import EXIT_USAGE, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="Run the whole hub on a simulated county (seeded, re-runnable).")


@app.callback(invoke_without_command=True)
def demo(
    seed: Annotated[int, typer.Option(help="county model seed (same seed, same county, same report)")] = 7,
    days: Annotated[int, typer.Option(min=1, max=366, help="days of CAD traffic")] = 30,
    start: Annotated[str, typer.Option(help="first simulated day (YYYY-MM-DD)")] = "2024-03-01",
    calls_per_day: Annotated[int, typer.Option(min=10, help="average CAD calls per day")] = 400,
    prefix: Annotated[str, typer.Option(help="topic prefix and read-model schema of the demo")] = "demo",
    api_port: Annotated[int, typer.Option(help="port of the background API / dashboard")] = 8080,
    serve_api: Annotated[
        bool, typer.Option("--serve-api/--no-serve-api", help="keep the API running in the background")
    ] = True,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="first delete the prefix's topics and drop its schemas (and stop its API), "
            "so the demo starts from an empty log",
        ),
    ] = False,
) -> None:
    """Bring up Kafka + PostgreSQL, simulate a county, run connectors, delivery and
    projections, and print the outcome report and the dashboard URL. With --reset, start
    from an empty log (the prefix's data is deleted first; the default prefix 'hub' is
    refused)."""

    try:
        first = date.fromisoformat(start)
    except ValueError:
        fail(f"--start must be YYYY-MM-DD, got {start!r}", EXIT_USAGE)
    opts = DemoOptions(
        seed=seed,
        days=days,
        start=first,
        calls_per_day=calls_per_day,
        prefix=prefix,
        api_port=api_port,
        serve_api=serve_api,
        reset=reset,
    )
    settings = get_settings()
    if "HUB_LOG_LEVEL" not in os.environ:  # the progress display is the demo's output
        configure_logging(settings.model_copy(update={"log_level": "WARNING"}))
    try:
        result = run(settings, opts)
    except Exception as exc:
        fail(f"hub demo failed: {type(exc).__name__}: {exc}")
    if result.verify_ok is False:
        fail("hub demo: the log failed verification (details: `hub verify`)")
