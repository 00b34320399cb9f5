"""``hub verify [--json]`` (tamper-evidence check of the whole log) and ``hub seal
[--once | --interval S]`` (the sealing process).

``hub verify`` exits 0 when the log is intact and 2 on any break; ``--json`` prints
``{"ok", "started_at", "finished_at", "records", "breaks": [{"kind", "topic", "partition",
"offset", "last_offset", "detail"}], "orphan_copies": [{"topic", "partition", "offset",
"event_id", "indexed_topic", "indexed_partition", "indexed_offset"}], "partitions": [...]}``.
Orphan copies (an appender crashed after Kafka acknowledged and before the index commit;
see :mod:`hub.kernel.verify`) are reported, on stdout in text mode, but are not breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from hub.bootstrap import open_runtime
from hub.kernel.output import emit_json, fail
from hub.kernel.seal import Sealer
from hub.kernel.settings import get_settings
from hub.kernel.verify import run_verify

EXIT_BROKEN = 2

app = typer.Typer(help="Verify the log against its seals (non-zero exit on any break).")
seal_app = typer.Typer(help="Seal new fact records into per-partition hash chains.")


@app.callback(invoke_without_command=True)
def verify(as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False) -> None:
    """Re-read every fact partition and report altered, missing, reordered or forged records."""

    async def go():
        async with open_runtime(get_settings(), ensure_topics=False) as rt:
            return await run_verify(rt.settings, rt.pool, rt.kafka)

    report = asyncio.run(go())
    if as_json:
        emit_json(report.to_json())
    else:
        for b in report.breaks:
            typer.echo(b.describe(), err=True)
        for o in report.orphan_copies:
            typer.echo(o.describe())
        sealed = sum(p.records - p.unsealed for p in report.partitions)
        unsealed = sum(p.unsealed for p in report.partitions)
        verdict = "OK" if report.ok else f"BROKEN ({len(report.breaks)} break(s))"
        orphans = f", {len(report.orphan_copies)} orphan copies (not breaks)" if report.orphan_copies else ""
        typer.echo(f"verify: {verdict}; {report.records} records, {sealed} sealed, {unsealed} not yet sealed"
                   + orphans)
    if not report.ok:
        raise typer.Exit(EXIT_BROKEN)


@seal_app.callback(invoke_without_command=True)
def seal(
    once: Annotated[bool, typer.Option("--once", help="one round, then exit (default)")] = False,
    interval: Annotated[float | None, typer.Option(help="seal every S seconds until stopped")] = None,
) -> None:
    """Extend each fact partition's hash chain and commit seals to the seal topic and PostgreSQL."""
    if once and interval is not None:
        fail("--once and --interval exclude each other")

    async def go() -> None:
        async with open_runtime(get_settings(), ensure_topics=False) as rt:
            sealer = Sealer(rt.settings, rt.pool, rt.kafka)
            while True:
                result = await sealer.run_once()
                if result.skipped_locked:
                    typer.echo("seal: another sealer holds the lock; skipped")
                else:
                    typer.echo(f"seal: {len(result.seals)} seal(s) over {result.records} new record(s)")
                if interval is None:
                    return
                await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
