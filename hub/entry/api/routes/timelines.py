"""Person-level reads: an incident's and a person's timeline.

Every read — allowed or denied — appends one row to the access log *before* the response
is sent; a read that cannot be logged is refused with 503. Unknown subjects are 404 (after
the log row). Entries the caller's role, program or consent does not cover are filtered out
(:func:`hub.entry.api.roles.filter_timeline`)."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Path

from hub.entry.api.deps import AccessLogDep, Purpose, ReadModelsDep, Who
from hub.entry.api.roles import (
    INCIDENT_PATTERN,
    PSEUDONYM_PATTERN,
    Family,
    Forbidden,
    Principal,
    authorize,
    check_timeline_scope,
    filter_timeline,
)
from hub.entry.api.scope import scope_from_entries
from hub.kernel.audit import AccessLog, AccessRecord

#: errors an access-log append can raise (the read is then refused with 503)
AUDIT_ERRORS = (asyncpg.PostgresError, OSError, KafkaError)

router = APIRouter(tags=["timelines"])

Entries = list[dict[str, Any]]


async def person_level_read(
    access_log: AccessLog,
    p: Principal,
    family: Family,
    subject: str,
    purpose: str,
    fetch: Callable[[], Awaitable[Entries]],
    scope_entries: Callable[[Entries], Awaitable[Entries]],
) -> Entries:
    """Authorize, fetch, scope-check and filter one person-level read, logging its outcome
    (``denied`` with the policy's reason, ``error`` when the read failed, or ``allowed``
    with the visible count) before returning."""
    request_id = str(uuid.uuid4())

    async def log(outcome: str, entries: int, reason: str | None = None) -> None:
        try:
            record = AccessRecord(p, family.value, subject, purpose, outcome, entries, request_id, reason)
            await access_log.append(record)
        except AUDIT_ERRORS as exc:
            raise HTTPException(503, "the access log is unavailable; person-level reads are refused") from exc

    try:
        authorize(p, family)
        entries = await fetch()
        scope = scope_from_entries(await scope_entries(entries))
        check_timeline_scope(p, scope, family)
        visible = filter_timeline(entries, p, scope, datetime.now(UTC))
    except Forbidden as exc:
        await log("denied", 0, str(exc))  # the policy's message: role, family, program
        raise
    except Exception as exc:
        await log("error", 0, f"read failed: {type(exc).__name__}")
        raise
    await log("allowed", len(visible))
    if not entries:
        raise HTTPException(404, "no such subject in the read models")
    return visible


@router.get("/v1/incidents/{incident_id}/timeline")
async def incident_timeline(
    p: Who,
    purpose: Purpose,
    incident_id: Annotated[str, Path(pattern=INCIDENT_PATTERN)],
    read_models: ReadModelsDep,
    access_log: AccessLogDep,
) -> dict[str, Any]:
    async def people(entries: Entries) -> Entries:
        """The incident's entries plus those of its people (their program and consents
        decide what the caller may see)."""
        persons = sorted({e["person"] for e in entries if e.get("person")})
        extra: Entries = []
        for person in persons:
            extra.extend(await read_models.person_timeline(person))
        return entries + extra

    visible = await person_level_read(
        access_log,
        p,
        Family.INCIDENT_TIMELINE,
        incident_id,
        purpose,
        lambda: read_models.incident_timeline(incident_id),
        people,
    )
    return {"incident_id": incident_id, "entries": visible}


@router.get("/v1/persons/{person}/timeline")
async def person_timeline(
    p: Who,
    purpose: Purpose,
    person: Annotated[str, Path(pattern=PSEUDONYM_PATTERN)],
    read_models: ReadModelsDep,
    access_log: AccessLogDep,
) -> dict[str, Any]:
    async def same(entries: Entries) -> Entries:
        return entries

    visible = await person_level_read(
        access_log,
        p,
        Family.PERSON_TIMELINE,
        person,
        purpose,
        lambda: read_models.person_timeline(person),
        same,
    )
    return {"person": person, "entries": visible}
