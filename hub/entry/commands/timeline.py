"""``hub timeline --incident ID | --person PSEUDONYM --purpose PURPOSE [--actor WHO] [--json]``:
one incident's or person's timeline across CAD, case system and EHR, in time order.

Both are person-level reads, held to the read API's rules:

- a purpose of use is required (the API's accepted list, :data:`hub.entry.api.roles.PURPOSES`);
- one row is appended to the API's append-only access log (:mod:`hub.kernel.audit`) —
  who (``--actor``, default the OS user; role ``operator``), what (``incident_timeline`` /
  ``person_timeline``), subject, purpose, entry count — *before* anything is printed; a
  read that cannot be logged prints nothing and exits 1;
- sealed (clinical) fields are rendered exactly as the API renders them, by the same
  function (:func:`hub.entry.api.readmodels.render_sealed`): ``{"sealed": true, "erased": bool}``,
  never ciphertext, and never opened (the API opens them for no role either).

``--json`` prints ``{"incident_id", "summary", "entries"}`` or ``{"person", "canonical",
"members", "summary", "entries"}``; entries as returned by
:meth:`projections.queries.ReadModelReader.incident_timeline` /
:meth:`~projections.queries.ReadModelReader.person_timeline` with ``detail`` rendered and an
``erased`` flag."""

from __future__ import annotations

import getpass
import uuid
from typing import Annotated, Any

import typer

from hub.bootstrap import migrate_all
from hub.entry.api.readmodels import render_sealed
from hub.entry.api.roles import PURPOSES, BadPurpose, Family, normalize_purpose
from hub.entry.commands import run_or_exit
from hub.kernel.audit import AccessLog, AccessRecord, Operator
from hub.kernel.db import open_pool
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import get_settings
from projections import queries

app = typer.Typer(help="Show an incident's or a person's timeline (person-level: purpose required, logged).")


def default_actor() -> str:
    """The OS user running the command (``unknown`` when the platform cannot tell)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.callback(invoke_without_command=True)
def timeline(
    incident: Annotated[str | None, typer.Option("--incident", help="incident id, e.g. sea:2023-123")] = None,
    person: Annotated[str | None, typer.Option("--person", help="person pseudonym (psn_…)")] = None,
    purpose: Annotated[
        str | None, typer.Option("--purpose", help="purpose of use (treatment, care-coordination, audit, …)")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="who reads, for the access log (default: the OS user)")
    ] = None,
    role: Annotated[str | None, typer.Option(help="show only what this role may see")] = None,
    no_part2: Annotated[bool, typer.Option("--no-part2", help="leave out 42 CFR Part 2 entries")] = False,
    schema: Annotated[str | None, typer.Option(help="read-model schema (default: postgres.schema)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
) -> None:
    """Print one timeline (after logging the read)."""

    if (incident is None) == (person is None):
        fail("give exactly one of --incident or --person", EXIT_USAGE)
    try:
        why = normalize_purpose(purpose)
    except BadPurpose:
        accepted = ", ".join(sorted(PURPOSES))
        fail(f"--purpose is required for person-level reads; one of: {accepted}", EXIT_USAGE)
    who = (actor or default_actor()).strip()
    if not who:
        fail("--actor is blank", EXIT_USAGE)
    settings = get_settings()
    target_schema = schema or settings.postgres.schema_
    family = Family.INCIDENT_TIMELINE if incident is not None else Family.PERSON_TIMELINE
    subject = incident if incident is not None else person
    assert subject is not None

    async def read(reader: queries.ReadModelReader) -> dict[str, Any] | None:
        if incident is not None:
            entries = await reader.incident_timeline(incident, role=role, include_part2=not no_part2)
            summary = await reader.incident_summary(incident)
            if summary is None and not entries:
                return None
            return {"incident_id": incident, "summary": summary, "entries": entries}
        assert person is not None
        summary = await reader.person_summary(person)
        if summary is None:
            return None
        entries = await reader.person_timeline(person, role=role, include_part2=not no_part2)
        return {
            "person": person,
            "canonical": summary["person"],
            "members": list(summary["members"]),
            "summary": summary,
            "entries": entries,
        }

    async def go() -> dict[str, Any] | None:
        async with open_pool(settings, max_size=2) as pool:
            await migrate_all(pool, settings)
            result = await read(queries.ReadModelReader.from_settings(pool, settings, schema=target_schema))
            if result is not None:  # summaries carry no sealed content (projections.timelines)
                entries = result["entries"]
                result["entries"] = await render_sealed(pool, settings.core_schema, entries, "detail")
            access_log = AccessLog(pool, settings.core_schema)
            await access_log.append(
                AccessRecord(
                    Operator(who),
                    family.value,
                    subject,
                    why,
                    "allowed",
                    len(result["entries"]) if result else 0,
                    f"cli-{uuid.uuid4()}",
                )
            )
            return result

    result = run_or_exit(go(), f"cannot read and log the timeline (schema {target_schema}); nothing shown")
    if result is None:
        fail(f"no such {'incident' if incident else 'person'}")
    if as_json:
        emit_json(queries.jsonable(result))
        return
    head = f"incident {incident}" if incident else f"person {person} (linked: {', '.join(result['members'])})"
    typer.echo(f"{head}: {len(result['entries'])} entries")
    for e in result["entries"]:
        flag = " [Part 2]" if e["part2"] else ""
        erased = " [erased]" if e["erased"] else ""
        typer.echo(f"  {e['at'].isoformat()}  {e['system']:<4}  {e['summary']}{flag}{erased}")
