"""``hub project [--until-caught-up]``: run the stream processors — the faust worker of
:mod:`projections.app` (read models in PostgreSQL + the outcome topic). Several processes
with the same settings share the work through one consumer group; stop with SIGINT /
SIGTERM (the current batch commits or rolls back as a whole; past ``stop_grace_s`` the
process exits at once, non-zero). A batch that fails stops the worker within a bound: it
exits non-zero for its supervisor to restart it. Without ``--until-caught-up`` it serves
``/metrics``, ``/livez`` (fails after ``probe_stale_s`` without projection progress; the
worker then exits 75 by itself, see :mod:`projections.projector`) and
``/readyz`` on ``metrics_port`` (:mod:`hub.kernel.probes`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hub.bootstrap import open_runtime
from hub.entry.commands import run_or_exit, stop_on_signals
from hub.kernel.output import emit_json
from hub.kernel.probes import Probes, progress_check, serve_probes
from hub.kernel.settings import get_settings
from projections.projector import project as run_projector

app = typer.Typer(help="Run the stream processors that maintain the read models and outcome topic.")


@app.callback(invoke_without_command=True)
def project(
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="exit once every fact partition is applied")
    ] = False,
    schema: Annotated[str | None, typer.Option(help="read-model schema (default: postgres.schema)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the run's counters as JSON")] = False,
) -> None:
    """Consume the fact topics into the read models, effectively once."""

    async def go():
        stop = asyncio.Event()
        settings = get_settings()
        stop_on_signals(stop, "hub project", settings.stop_grace_s)
        probes = Probes(checks=[progress_check(settings.probe_stale_s)])
        port = 0 if until_caught_up else settings.metrics_port  # a one-shot run serves no probes
        async with serve_probes(settings.metrics_host, port, probes), open_runtime(settings) as rt:
            probes.ready = True
            return await run_projector(rt, schema=schema, until_caught_up=until_caught_up, stop=stop)

    stats = run_or_exit(go(), "projector failed")
    out = {
        "batches": stats.batches,
        "records": stats.records,
        "new_facts": stats.new_facts,
        "duplicates": stats.duplicates,
        "skipped_already_applied": stats.skipped,
        "dead_lettered": stats.dead_lettered,
        "outcome_records_published": stats.published,
    }
    if as_json:
        emit_json(out)
    else:
        typer.echo("project: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in out.items()))
