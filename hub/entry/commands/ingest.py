"""``hub ingest``: one-shot imports into the log.

``hub ingest cad --profile NAME PATH...`` prints JSON counts that add up
(``read == appended + duplicates + excluded + dead_lettered``, per record; events are
counted apart; ``newest_record_at`` is the latest event time read). A re-export that
revises a row (same CAD number, changed content) adds one ``CallRevised`` fact.
Exit codes: 0 done; 1 the input or the services are unusable (nothing of a refused file
is appended); 3 ``--strict`` and some record was dead-lettered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from connectors.cad.ingest import ingest_files
from connectors.cad.profile import check_custom
from connectors.cad.used_profile import UsedProfile
from connectors.core.recorded import MapperConfigStore
from connectors.core.state import PostgresRevisionStore
from hub.bootstrap import open_runtime
from hub.kernel.deadletters import describe_failure
from hub.kernel.output import emit_json, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="One-shot imports of source files into the log.", no_args_is_help=True)


async def _ingest_cad(profile_name: str, paths: list[Path], source: str | None) -> dict[str, object]:
    used = UsedProfile.of(profile_name)
    profile = used.profile
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    settings = get_settings()
    check_custom(profile, settings)
    async with open_runtime(settings) as rt:
        # recorded first: the dead letters name it, so a re-drive finds a YAML-path profile
        ref = await MapperConfigStore(rt.pool, settings.core_schema).record(used)
        counts = await ingest_files(
            paths,
            profile,
            rt.log,
            rt.deadletter_sealer,
            PostgresRevisionStore(rt.pool, settings.core_schema),
            source,
            profile_ref=ref,
            keyring=rt.keyring,
        )
    out = counts.as_dict()
    out["profile"] = profile.name
    out["files"] = [str(p) for p in paths]
    return out


@app.command("cad")
def cad(
    paths: list[Path] = typer.Argument(..., help="CSV export files (or EIDO JSON files with --profile eido)"),
    profile: str = typer.Option(
        ..., "--profile", "-p", help="seattle, new_orleans, san_francisco, generic, eido or a YAML file"
    ),
    source: str = typer.Option(
        None, "--source", help="source name for ids and metrics (default: the profile's)"
    ),
    strict: bool = typer.Option(False, "--strict", help="exit 3 when any record was dead-lettered"),
) -> None:
    """Import CAD export files once and print the counts as JSON."""
    try:
        result = asyncio.run(_ingest_cad(profile, paths, source))
    except (OSError, ValueError, RuntimeError) as exc:
        fail(f"hub ingest cad: {describe_failure(exc, 1000)}")
    emit_json(result, sort_keys=True)
    if strict and result["dead_lettered"]:
        raise typer.Exit(3)
