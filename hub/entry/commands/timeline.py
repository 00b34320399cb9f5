"""``hub timeline --incident ID | --person PSEUDONYM --purpose PURPOSE [--actor WHO] [--json]``:
one incident's or person's timeline across CAD, case system and EHR, in time order.

Both are person-level reads, held to the read API's rules:

- a purpose of use is required (the API's accepted list, :data:`hub.entry.api.roles.PURPOSES`);
- one row is appended to the API's append-only access log (:mod:`hub.kernel.audit`) —
  who (``--actor``, default the OS user; role ``operator``), what (``incident_timeline`` /
  ``person_timeline``), subject, purpose, entry count — *before* anything is printed; a
  read that cannot be logged prints nothing and exits 1;
- a refused read (no or unknown ``--purpose``, blank ``--actor``) is logged too, outcome
  ``refused`` with the reason (best effort: the refusal and its exit code 2 stand when the
  log cannot be reached, with a warning), and a read that fails is logged as ``error``;
  a subject that is not a well-formed incident id or pseudonym is logged as ``<invalid>``;
- sealed (clinical) fields are rendered exactly as the API renders them, by the same
  function (:func:`hub.entry.api.readmodels.render_sealed`): ``{"sealed": true, "erased": bool}``,
  never ciphertext, and never opened (the API opens them for no role either).

``--json`` prints ``{"incident_id", "summary", "entries"}`` or ``{"person", "canonical",
"members", "summary", "entries"}``; entries as returned by
:meth:`projections.queries.ReadModelReader.incident_timeline` /
:meth:`~projections.queries.ReadModelReader.person_timeline` with ``detail`` rendered and an
``erased`` flag."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from typing import Annotated, Any, NoReturn

import typer

from hub.bootstrap import open_reader
from hub.entry.api.readmodels import render_sealed
from hub.entry.api.roles import (
    PURPOSES,
    BadPurpose,
    Family,
    UnknownPurpose,
    loggable_purpose,
    loggable_subject,
    normalize_purpose,
)
from hub.entry.commands import run_or_exit
from hub.kernel.audit import ANONYMOUS, AccessRecord, Operator
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import Settings, get_settings
from projections import queries

app = typer.Typer(help="Show an incident's or a person's timeline (person-level: purpose required, logged).")


async def _append(settings: Settings, record: AccessRecord) -> None:
    async with open_reader(settings, max_size=1) as reader:
        await reader.access_log(settings).append(record)


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
    settings = get_settings()
    family = Family.INCIDENT_TIMELINE if incident is not None else Family.PERSON_TIMELINE
    subject = loggable_subject(family, incident if incident is not None else person)
    who = (actor or default_actor()).strip()

    def refuse(message: str, reason: str) -> NoReturn:
        record = AccessRecord(
            Operator(who) if who else ANONYMOUS, family.value, subject, loggable_purpose(purpose),
            "refused", 0, f"cli-{uuid.uuid4()}", reason,
        )  # fmt: skip
        try:
            asyncio.run(_append(settings, record))
        except Exception as exc:  # the refusal stands; say that it is not in the log
            typer.echo(f"warning: the refusal could not be logged ({type(exc).__name__})", err=True)
        fail(message, EXIT_USAGE)

    try:
        why = normalize_purpose(purpose)
    except BadPurpose as exc:
        accepted = ", ".join(sorted(PURPOSES))
        refuse(
            f"--purpose is required for person-level reads; one of: {accepted}",
            "bad purpose" if isinstance(exc, UnknownPurpose) else "no purpose",
        )
    if not who:
        refuse("--actor is blank", "no actor")
    target_schema = schema or settings.postgres.schema_

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
        async with open_reader(settings, max_size=2) as reader:
            access_log = reader.access_log(settings)
            request_id = f"cli-{uuid.uuid4()}"
            try:
                models = queries.ReadModelReader.from_settings(reader.pool, settings, schema=target_schema)
                result = await read(models)
                if result is not None:  # summaries carry no sealed content (projections.timelines)
                    entries = result["entries"]
                    core = settings.core_schema
                    result["entries"] = await render_sealed(reader.pool, core, entries, "detail")
            except Exception as exc:
                reason = f"read failed: {type(exc).__name__}"
                await access_log.append(
                    AccessRecord(Operator(who), family.value, subject, why, "error", 0, request_id, reason)
                )
                raise
            entries_read = len(result["entries"]) if result else 0
            await access_log.append(
                AccessRecord(Operator(who), family.value, subject, why, "allowed", entries_read, request_id)
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
