"""``hub deadletters list | show | retry``: inspect and re-drive dead letters.

``list [--json] [--source S] [--status open|redriven]`` prints PHI-free summaries.
``show ID [--json] [--reveal --actor NAME --reason TEXT]`` prints one dead letter; its raw
payload is masked (shape only) unless ``--reveal`` is given, and every reveal is written to
the audit table ``<core>.deadletter_access`` before anything is printed.
``retry ID | --all`` re-drives through the re-drivers of :data:`connectors.registry.REDRIVERS`
(a CAD record with the profile its connector recorded: that base profile as it is now, with
the county's overrides; a case record with its component's recorded source, person
namespace and agency); exit code 1 when any retry failed.

``--json`` output: ``list`` → ``{"items": [summary...]}``; ``show`` → summary plus
``"raw"`` (masked or revealed; ``null`` when erased), ``"revealed"`` and ``"erased"`` (the
payload belonged to an erased person: nothing is shown, the access is logged as
``show-erased``); ``retry`` → ``{"results": [{"id", "ok",
"appended", "duplicates", "error"}]}``.
"""

from __future__ import annotations

import asyncio
import getpass
from dataclasses import asdict
from typing import Annotated

import typer

from connectors.registry import REDRIVERS
from hub.bootstrap import open_runtime
from hub.kernel.deadletters import DeadLetterStore, ErasedPayloadError, mask_raw, open_raw, redrive
from hub.kernel.output import emit_json, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="Inspect and re-drive dead-lettered input records.", no_args_is_help=True)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
    source: Annotated[str | None, typer.Option(help="source, source family or profile")] = None,
    status: Annotated[str | None, typer.Option(help="open or redriven")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 1000,
) -> None:
    """List dead letters (no payloads)."""

    async def go() -> list[dict]:
        async with open_runtime(get_settings(), ensure_topics=False) as rt:
            rows = await DeadLetterStore(rt.pool, rt.settings.core_schema).list(
                source=source, status=status, limit=limit
            )
            return [r.summary() for r in rows]

    try:
        items = asyncio.run(go())
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"items": items})
        return
    if not items:
        typer.echo("no dead letters")
        return
    for it in items:
        typer.echo(
            f"{it['id']}  {it['status']:<8} {it['source']:<18} {it['stage']:<8} "
            f"{it['record_ref']}  {it['reason'][:80]}"
        )
    typer.echo(f"{len(items)} dead letter(s)")


@app.command()
def show(
    dl_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    reveal: Annotated[bool, typer.Option("--reveal", help="show the raw payload in clear (audited)")] = False,
    actor: Annotated[str | None, typer.Option(help="operator name recorded for a reveal")] = None,
    reason: Annotated[str | None, typer.Option(help="why the payload is revealed")] = None,
) -> None:
    """Show one dead letter; the raw payload is masked unless --reveal."""
    who = actor or getpass.getuser()
    if reveal and not reason:
        fail("--reveal needs --reason (it is written to the audit log)")

    async def go() -> dict | None:
        async with open_runtime(get_settings(), ensure_topics=False) as rt:
            store = DeadLetterStore(rt.pool, rt.settings.core_schema)
            row = await store.get(dl_id)
            if row is None:
                return None
            try:
                raw = await open_raw(row.record, rt.deadletter_sealer, rt.keyring)
            except ErasedPayloadError:
                await store.record_access(rt.audit, dl_id, who, "show-erased")
                return row.summary() | {"raw": None, "revealed": False, "erased": True}
            if reveal:
                await store.record_access(rt.audit, dl_id, who, "reveal", reason)  # audited before shown
                shown = raw.decode("utf-8", errors="replace")
            else:
                await store.record_access(rt.audit, dl_id, who, "show-masked")
                shown = mask_raw(raw)
            return row.summary() | {"raw": shown, "revealed": reveal, "erased": False}

    item = asyncio.run(go())
    if item is None:
        fail(f"no dead letter {dl_id}")
    if as_json:
        emit_json(item)
        return
    for k, v in item.items():
        if k != "raw":
            typer.echo(f"{k:>16}: {v}")
    if item["erased"]:
        typer.echo("             raw: (erased: the person's key was destroyed)")
        return
    typer.echo("             raw:" + (" (revealed, audited)" if reveal else " (masked; --reveal to show)"))
    typer.echo(item["raw"])


@app.command()
def retry(
    dl_id: Annotated[str | None, typer.Argument(metavar="ID")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every open dead letter")] = False,
    source: Annotated[str | None, typer.Option(help="with --all: only this source/family/profile")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-drive dead letters through their re-drivers (appended exactly once)."""
    if (dl_id is None) == (not all_):
        fail("give either an ID or --all")

    async def go() -> list[dict] | None:
        async with open_runtime(get_settings(), ensure_topics=False) as rt:
            store = DeadLetterStore(rt.pool, rt.settings.core_schema)
            if dl_id is not None:
                row = await store.get(dl_id)
                if row is None:
                    return None
                rows = [row]
            else:
                rows = await store.list(source=source, status="open", limit=100000)
            return [asdict(await redrive(rt, row, REDRIVERS)) for row in rows]

    results = asyncio.run(go())
    if results is None:
        fail(f"no dead letter {dl_id}")
    if as_json:
        emit_json({"results": results})
    else:
        for r in results:
            state = "ok" if r["ok"] else "FAILED"
            detail = r["error"] or f"{r['appended']} appended, {r['duplicates']} duplicate"
            typer.echo(f"{r['id']}  {state}  {detail}")
        typer.echo(f"{sum(r['ok'] for r in results)}/{len(results)} re-driven")
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)
