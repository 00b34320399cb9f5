"""``hub erase --person PSEUDONYM [--person PSEUDONYM …] --basis TEXT --requested-by WHO
[--json]``: erase persons by crypto-shredding (see :mod:`hub.kernel.erasure`).

Appends ``erasure.person.erased.v1`` for each person and destroys their data keys: every
sealed payload of those persons (notes, demographics, referral reasons, EHR answers) becomes
unreadable in every replay; timelines show those fields as erased. Idempotent. ``--basis``
and ``--requested-by`` go into the log in clear: a request or order id and a staff id,
never PHI. Exit codes: 0 done (or already done), 2 bad arguments, 1 services unusable.

Also destroys the keys of the CAD incidents the persons' case / referral facts link them to
(the calls' sealed remarks and clearance text). All of it is one key rotation, whose cost
grows with the number of live keys: erase a batch of persons in one run (repeat
``--person``) rather than one run each.

``--json`` prints ``{"person", "event_id", "appended", "key_destroyed",
"incident_keys_destroyed"}`` for one person, a list of such objects for several.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hub.bootstrap import open_runtime
from hub.entry.commands import run_or_exit
from hub.kernel.erasure import ErasureError, erase_persons, erasure_event
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="Erase persons' clinical payloads for good (crypto-shredding).")


@app.callback(invoke_without_command=True)
def erase(
    persons: Annotated[
        list[str], typer.Option("--person", help="a person's pseudonym (psn_…); repeat to erase several")
    ],
    basis: Annotated[str, typer.Option("--basis", help="why: request / order id (no PHI)")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="who asked (staff id)")],
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
) -> None:
    """Append the erasure facts and destroy the persons' data keys (one key rotation)."""
    try:
        for person in persons:  # validate before connecting
            erasure_event(person, basis=basis, requested_by=requested_by)
    except ErasureError as exc:
        fail(str(exc), EXIT_USAGE)

    async def go():
        async with open_runtime(get_settings()) as rt:
            return await erase_persons(rt, persons, basis=basis, requested_by=requested_by)

    results = run_or_exit(go(), "cannot erase the person" + ("s" if len(set(persons)) > 1 else ""))
    if as_json:
        docs = [r.as_dict() for r in results]
        emit_json(docs[0] if len(set(persons)) == 1 else docs)
        return
    for result in results:
        fact = "erasure appended" if result.appended else "erasure already on record"
        key = "key destroyed" if result.key_destroyed else "key was already destroyed"
        typer.echo(f"erase {result.person}: {fact} ({result.event_id}); {key}")
