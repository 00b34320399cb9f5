"""``hub timeline --incident ID | --person PSEUDONYM [--json]``: one incident's or person's
timeline across CAD, case system and EHR, in time order. Sealed (clinical) content stays
sealed; entries carry their source system, visibility per role and Part 2 flag.
``--json`` prints ``{"incident_id", "summary", "entries"}`` or ``{"person", "canonical",
"members", "summary", "entries"}``; entries as returned by
:func:`projections.queries.incident_timeline` / :func:`~projections.queries.person_timeline`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from hub.commands import run_or_exit
from hub.db import open_pool
from hub.settings import get_settings

app = typer.Typer(help="Show an incident's or a person's timeline.")


@app.callback(invoke_without_command=True)
def timeline(
    incident: Annotated[str | None, typer.Option("--incident", help="incident id, e.g. sea:2023-123")] = None,
    person: Annotated[str | None, typer.Option("--person", help="person pseudonym (psn_…)")] = None,
    role: Annotated[str | None, typer.Option(help="show only what this role may see")] = None,
    no_part2: Annotated[bool, typer.Option("--no-part2", help="leave out 42 CFR Part 2 entries")] = False,
    schema: Annotated[str | None, typer.Option(help="read-model schema (default: postgres.schema)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
) -> None:
    """Print one timeline."""
    from projections import queries

    if (incident is None) == (person is None):
        typer.echo("error: give exactly one of --incident or --person", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    target_schema = schema or settings.postgres.schema_

    async def go():
        async with open_pool(settings, max_size=2) as pool:
            if incident is not None:
                entries = await queries.incident_timeline(
                    pool, target_schema, incident, role=role, include_part2=not no_part2
                )
                summary = await queries.incident_summary(pool, target_schema, incident)
                if summary is None and not entries:
                    return None
                return {"incident_id": incident, "summary": summary, "entries": entries}
            assert person is not None
            summary = await queries.person_summary(pool, target_schema, person)
            if summary is None:
                return None
            entries = await queries.person_timeline(
                pool, target_schema, person, role=role, include_part2=not no_part2
            )
            return {
                "person": person,
                "canonical": summary["person"],
                "members": list(summary["members"]),
                "summary": summary,
                "entries": entries,
            }

    result = run_or_exit(go(), f"cannot read timeline from schema {target_schema}")
    if result is None:
        typer.echo(f"error: no such {'incident' if incident else 'person'}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(queries.jsonable(result), indent=2))
        return
    head = f"incident {incident}" if incident else f"person {person} (linked: {', '.join(result['members'])})"
    typer.echo(f"{head}: {len(result['entries'])} entries")
    for e in result["entries"]:
        flag = " [Part 2]" if e["part2"] else ""
        typer.echo(f"  {e['at'].isoformat()}  {e['system']:<4}  {e['summary']}{flag}")
