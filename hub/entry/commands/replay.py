"""``hub replay --into SCHEMA [--as-of TIME] [--occurred-through TIME] [--workers N]``:
rebuild every read model from the log into a fresh schema through the batch path (large
fetches, the facts bucketed by connected component, one fold per bucket, COPY; see
:mod:`projections.replay`). ``--as-of`` is *known at*: only the events the hub had recorded
at that time ("what did we know then"). ``--occurred-through`` is *occurred through*: only
the facts that had happened by then, however late they were recorded ("what happened by
then", with every late export and correction since). ``--workers`` splits the reading
(by partition) and the deriving and loading (by bucket) over that many worker processes
(default: one per CPU the process may use; none on a single CPU).
Sealed disposition texts are opened with the key store (on the PKCS#11 token) to classify
them, as the live projector does."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated

import typer

from hub.entry.commands import run_or_exit
from hub.kernel.db import open_pool
from hub.kernel.kafka import KafkaClients
from hub.kernel.keystore import TokenKeyring
from hub.kernel.output import emit_json
from hub.kernel.settings import get_settings
from projections.replay import replay_into

app = typer.Typer(help="Rebuild the read models from the log into a fresh schema.")


def parse_time(value: str) -> datetime:
    """ISO 8601 with a zone (``Z`` accepted)."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    if when.tzinfo is None:
        raise typer.BadParameter("the time needs a zone, e.g. 2024-03-01T00:00:00Z")
    return when


def default_workers() -> int:
    """One worker process per CPU this process may run on, none (all in this process) on
    one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cpus if cpus > 1 else 0


@app.callback(invoke_without_command=True)
def replay(
    into: Annotated[str, typer.Option("--into", help="the fresh schema to build")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="known at: events recorded by this time (ISO 8601, zone)")
    ] = None,
    occurred_through: Annotated[
        str | None,
        typer.Option("--occurred-through", help="occurred through: facts that happened by this time"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print counters as JSON")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=0,
            help="worker processes reading and loading (0: this one; default: one per CPU, 0 on one CPU)",
        ),
    ] = None,
) -> None:
    """Rebuild every read model into ``--into``."""

    when = parse_time(as_of) if as_of else None
    through = parse_time(occurred_through) if occurred_through else None
    settings = get_settings()
    if workers is None:
        workers = default_workers()

    async def go():
        async with open_pool(settings) as pool:  # reads the log and writes one schema: no runtime
            keyring = TokenKeyring(settings, pool)  # opens sealed disposition texts to classify them
            await keyring.start()
            try:
                return await replay_into(
                    settings, pool, KafkaClients(settings.kafka), into, as_of=when, occurred_through=through,
                    workers=workers, keys=keyring,
                )
            finally:
                await keyring.stop()

    stats = run_or_exit(go(), "replay failed")
    out = {
        "schema": into,
        "as_of": when.isoformat() if when else None,
        "occurred_through": through.isoformat() if through else None,
        "records": stats.records,
        "facts": stats.facts,
        "duplicates": stats.duplicates,
        "after_as_of": stats.skipped_as_of,
        "after_occurred_through": stats.skipped_occurred,
        "unreadable": stats.unreadable,
        "rows": stats.rows,
        "seconds": stats.seconds,
    }
    if as_json:
        emit_json(out)
    else:
        typer.echo(
            f"replay into {into}: {stats.facts} facts from {stats.records} records, {stats.rows} rows"
            + (f" (as of {when.isoformat()}, {stats.skipped_as_of} later records left out)" if when else "")
        )
