"""The case managers' frequent-user worklist (``GET /v1/worklist/frequent-users``): the
people of the caller's program with N+ behavioral-health contacts in a window, their last
contact, enrolment status, open referrals and consent state.

Person-level: roles clinician and case_manager with a program claim only (never analysts,
nor admins), a purpose of use required, and every view — allowed, denied, refused or failed
— one row in the access log before the answer (subject ``worklist:<program>``, ``entries``
= people shown). 42 CFR Part 2 facts appear only under a consent naming the program
(:mod:`hub.entry.api.worklist`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from hub.entry.api.deps import AccessLogDep, Purpose, ReadModelsDep, State, Who
from hub.entry.api.roles import Family, Forbidden, authorize
from hub.entry.api.routes.timelines import AUDIT_ERRORS
from hub.entry.api.worklist import worklist
from hub.kernel.audit import AccessRecord
from projections.queries import jsonable

router = APIRouter(tags=["worklist"])


@router.get("/v1/worklist/frequent-users")
async def frequent_users(
    p: Who,
    purpose: Purpose,
    state: State,
    read_models: ReadModelsDep,
    access_log: AccessLogDep,
    min_contacts: Annotated[int | None, Query(ge=1, le=100)] = None,
    days: Annotated[int | None, Query(ge=1, le=3650)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    """People of the caller's program with ``min_contacts``+ contacts in ``days`` days
    (defaults: ``projections.worklist_min_contacts`` / ``worklist_window_days``)."""
    cfg = state.settings.projections
    n = min_contacts or cfg.worklist_min_contacts
    window = days or cfg.worklist_window_days
    request_id = str(uuid.uuid4())
    subject = f"worklist:{p.program or '<none>'}"

    async def log(outcome: str, entries: int, reason: str | None = None) -> None:
        try:
            await access_log.append(
                AccessRecord(p, Family.WORKLIST.value, subject, purpose, outcome, entries, request_id, reason)
            )
        except AUDIT_ERRORS as exc:
            raise HTTPException(503, "the access log is unavailable; person-level reads are refused") from exc

    now = datetime.now(UTC)
    try:
        authorize(p, Family.WORKLIST)
        assert p.program is not None  # authorize refuses a program role without one
        rows = await read_models.frequent_users(
            program=p.program, min_contacts=n, since=now - timedelta(days=window), limit=limit
        )
        people = worklist(rows, p, now)
    except Forbidden as exc:
        await log("denied", 0, str(exc))
        raise
    except Exception as exc:
        await log("error", 0, f"read failed: {type(exc).__name__}")
        raise
    await log("allowed", len(people))
    return jsonable({"program": p.program, "min_contacts": n, "days": window, "people": people})
