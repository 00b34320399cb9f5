"""``hub erase --person PSEUDONYM --basis TEXT --requested-by WHO [--json]``: erase a person
by crypto-shredding (see :mod:`hub.kernel.erasure`).

Appends ``erasure.person.erased.v1`` and destroys the person's data key: every sealed
payload of that person (notes, demographics, referral reasons, EHR answers) becomes
unreadable in every replay; timelines show those fields as erased. Idempotent. ``--basis``
and ``--requested-by`` go into the log in clear: a request or order id and a staff id,
never PHI. Exit codes: 0 done (or already done), 2 bad arguments, 1 services unusable.

Also destroys the keys of the CAD incidents the person's case / referral facts link them to
(the calls' sealed remarks and clearance text).

``--json`` prints ``{"person", "event_id", "appended", "key_destroyed",
"incident_keys_destroyed"}``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hub.bootstrap import open_runtime
from hub.entry.commands import run_or_exit
from hub.kernel.erasure import ErasureError, erase_person, erasure_event
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import get_settings

app = typer.Typer(help="Erase a person's clinical payloads for good (crypto-shredding).")


@app.callback(invoke_without_command=True)
def erase(
    person: Annotated[str, typer.Option("--person", help="the person's pseudonym (psn_…)")],
    basis: Annotated[str, typer.Option("--basis", help="why: request / order id (no PHI)")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="who asked (staff id)")],
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
) -> None:
    """Append the erasure fact and destroy the person's data key."""
    try:
        erasure_event(person, basis=basis, requested_by=requested_by)  # validate before connecting
    except ErasureError as exc:
        fail(str(exc), EXIT_USAGE)

    async def go():
        async with open_runtime(get_settings()) as rt:
            return await erase_person(rt, person, basis=basis, requested_by=requested_by)

    result = run_or_exit(go(), "cannot erase the person")
    if as_json:
        emit_json(result.as_dict())
        return
    fact = "erasure appended" if result.appended else "erasure already on record"
    key = "key destroyed" if result.key_destroyed else "key was already destroyed"
    typer.echo(f"erase {person}: {fact} ({result.event_id}); {key}")
