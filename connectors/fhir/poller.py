"""FHIR Task poller: the EHR's Task status changes become referral answer events.

Per destination (``read: history``, the default), ``GET [base]/Task/_history?_since=<cursor>
&_count=N`` (following ``next`` links): every Task *version* stored since the cursor, so each
status change the clinic made — also those made while the hub could not poll or append — is
read with its own time (finding 5 of issue 13: reading only the current state recorded an
``accepted`` that had become ``in-progress`` at the later time). The versions of all pages
are read first, then mapped oldest first (:func:`history_answers`: per referral and answer
kind, the earliest version that gives it), appended, and only then is the cursor (highest
``meta.lastUpdated`` seen) stored in PostgreSQL. ``_since`` is inclusive, so boundary versions
are re-read, which is harmless: answer events have deterministic ids, and the earliest
version of a kind is the same on every re-read.

``read: current`` (an EHR without ``_history``):
``GET [base]/Task?_lastUpdated=ge<cursor>&_sort=_lastUpdated&_count=N``, the current state
only; a change overtaken before the poll is then recorded at the later state's time. Only Tasks carrying
the hub's Task identifier are considered; such a Task naming a referral the hub never sent is
dead-lettered. An answer's time is the EHR's ``Task.lastModified`` (when the status
changed), not the time of the poll.

Failures: a poll that fails (the EHR, the log, PostgreSQL or the key store unreachable)
keeps the destination's cursor, so the same Tasks are read again; consecutive failed
rounds wait longer (jittered back-off, at least ``interval_s``). An answer note is sealed
with the person's key resolved beforehand (awaited, bounded), never on a worker thread.

:func:`read_task` is the pure mapping of one Task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.backoff import Backoff
from connectors.fhir.client import FhirClient, FhirEndpoint
from connectors.referrals.answers import TASK_STATUS_ANSWERS, AnswerKind, answer_event
from connectors.referrals.content import TASK_SYSTEM
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import WorkerDeps
from hub.kernel import metrics
from hub.kernel.crypto import KeyDestroyedError, seal, seal_context
from hub.kernel.deadletters import build_dead_letter, describe_failure
from hub.kernel.errors import is_retriable
from schemas.demographics import coded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskAnswer:
    referral_id: str
    task_id: str
    status: str
    kind: AnswerKind | None
    note: str | None
    last_updated: datetime | None  # meta.lastUpdated: the server's record time (the poll cursor)
    changed_at: datetime | None  # Task.lastModified, else meta.lastUpdated: the answer's time
    #: what the EHR's Patient says of the person, normalized (:func:`patient_demographics`)
    demographics: dict[str, str] = field(default_factory=dict)


def _instant(value: Any) -> datetime | None:
    """A FHIR ``instant``/``dateTime`` as an aware datetime (a date or a zone-less value is
    read as UTC), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


US_CORE_RACE = "http://hl7.org/fhir/us-core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us-core/StructureDefinition/us-core-ethnicity"


def _omb_codes(patient: dict[str, Any], url: str) -> list[str]:
    """The ``ombCategory`` codes of a US Core race / ethnicity extension."""
    codes = []
    for ext in patient.get("extension") or []:
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        for sub in ext.get("extension") or []:
            coding = sub.get("valueCoding") if isinstance(sub, dict) else None
            if sub.get("url") == "ombCategory" and isinstance(coding, dict) and coding.get("code"):
                codes.append(str(coding["code"]))
    return codes


def task_patient(task: dict[str, Any], included: Sequence[dict[str, Any]] = ()) -> dict[str, Any] | None:
    """The Patient of a Task's answer: the one ``Task.for`` references — contained
    (``#id``) or among the search Bundle's other resources (``Patient/id``) — else a
    single contained Patient; None when there is none. ``included``: the other resources
    of the page the Task came in (``_include=Task:patient``)."""
    ref = str((task.get("for") or {}).get("reference") or "")
    contained = [r for r in task.get("contained") or [] if isinstance(r, dict)
                 and r.get("resourceType") == "Patient"]
    for r in contained:
        if ref == f"#{r.get('id')}":
            return r
    for r in included:
        if isinstance(r, dict) and r.get("resourceType") == "Patient" and ref == f"Patient/{r.get('id')}":
            return r
    return contained[0] if len(contained) == 1 else None


def patient_demographics(patient: dict[str, Any] | None) -> dict[str, str]:
    """The demographics of a FHIR Patient in the hub's vocabularies
    (:func:`schemas.demographics.coded`): US Core race (every ``ombCategory``; two or more =
    ``multiple``) and ethnicity, ``gender``, ``birthDate`` (a full date only). Pure."""
    if not patient:
        return {}
    ethnicity = _omb_codes(patient, US_CORE_ETHNICITY)
    birth = patient.get("birthDate")
    return coded(
        _omb_codes(patient, US_CORE_RACE),
        ethnicity[0] if ethnicity else None,
        patient.get("gender") if isinstance(patient.get("gender"), str) else None,
        birth if isinstance(birth, str) and len(birth) == 10 else None,
    )


def read_task(task: dict[str, Any], included: Sequence[dict[str, Any]] = ()) -> TaskAnswer | None:
    """The answer a Task carries, or None when the Task is not one of the hub's.

    Two times: ``meta.lastUpdated`` is when the server stored this version (what the poll
    cursor pages by); ``Task.lastModified`` is when the EHR says the status changed — the
    time of the answer event. An EHR that leaves ``lastModified`` out is taken at its
    ``meta.lastUpdated``."""
    rid = next((i.get("value") for i in task.get("identifier") or [] if i.get("system") == TASK_SYSTEM), None)
    if not rid:
        return None
    status = str(task.get("status", ""))
    last = _instant((task.get("meta") or {}).get("lastUpdated"))
    changed = _instant(task.get("lastModified")) or last
    note = (task.get("statusReason") or {}).get("text") or None
    return TaskAnswer(
        rid, str(task.get("id", "")), status, TASK_STATUS_ANSWERS.get(status), note, last, changed,
        patient_demographics(task_patient(task, included)),
    )


class PollerDestination(FhirEndpoint):
    model_config = ConfigDict(extra="ignore")


class PollerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(5.0, gt=0)
    page_size: int = Field(100, ge=1, le=1000)
    #: history: Task/_history since the cursor (every change, each at its own time);
    #: current: a Task search by _lastUpdated (the current state only)
    read: Literal["history", "current"] = "history"
    destinations: dict[str, PollerDestination]


def history_answers(versions: list[dict[str, Any]]) -> list[TaskAnswer]:
    """The answers of a set of Task versions (pure): oldest version first (by the time the
    EHR stored it, then its version id), one answer per referral and kind — the earliest
    version that gives it, so an ``accepted`` keeps its own time even when an
    ``in-progress`` (which also implies acceptance) followed before the poll. Versions
    that are not the hub's Tasks or carry no answer are left out."""

    def order(task: dict[str, Any]) -> tuple[datetime, int]:
        meta = task.get("meta") or {}
        version = str(meta.get("versionId", "0"))
        return (_instant(meta.get("lastUpdated")) or datetime.min.replace(tzinfo=UTC),
                int(version) if version.isdigit() else 0)

    seen: set[tuple[str, str]] = set()
    out: list[TaskAnswer] = []
    for task in sorted(versions, key=order):
        ans = read_task(task)
        if ans is None or ans.kind is None or (ans.referral_id, ans.kind) in seen:
            continue
        seen.add((ans.referral_id, ans.kind))
        out.append(ans)
    return out


class FhirTaskPoller:
    def __init__(self, deps: WorkerDeps, config: PollerConfig) -> None:
        self.deps = deps
        self.config = config
        self.ledger = Ledger(deps.pool, deps.core_schema)
        self.clients = {d: FhirClient(cfg) for d, cfg in config.destinations.items()}
        self._task: asyncio.Task[None] | None = None
        self.events_appended = 0
        self.backoff = Backoff(base=config.interval_s, cap=max(60.0, config.interval_s))
        self.failed_rounds = 0  # consecutive rounds in which some destination failed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fhir-task-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self.clients.values():
            await c.close()

    async def _run(self) -> None:
        while True:
            failed = False
            for dest in self.clients:
                try:
                    await self.poll_once(dest)
                    metrics.SOURCE_UP.labels(f"ehr/fhir/{dest}").set(1)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the poller never dies: the cursor stays, it retries
                    failed = True
                    metrics.SOURCE_UP.labels(f"ehr/fhir/{dest}").set(0)
                    metrics.SOURCE_ERRORS.labels(f"ehr/fhir/{dest}").inc()
                    if is_retriable(exc):
                        log.warning("task poll of %s unavailable: %s", dest, describe_failure(exc))
                    else:  # the type only: an EHR's answer may quote clinical text
                        log.error("task poll of %s failed: %s", dest, type(exc).__name__)
            self.failed_rounds = self.failed_rounds + 1 if failed else 0
            await asyncio.sleep(self.round_delay())

    def round_delay(self) -> float:
        """Seconds until the next round: ``interval_s``, or a jittered back-off that grows
        with consecutive failed rounds (never shorter than ``interval_s``)."""
        if not self.failed_rounds:
            return self.config.interval_s
        return max(self.config.interval_s, self.backoff.delay(self.failed_rounds))

    async def poll_once(self, destination: str) -> int:
        """One poll of one destination; returns the number of new events."""
        if self.config.read == "current":
            return await self._poll_current(destination)
        client = self.clients[destination]
        cursor = await self.ledger.load_cursor(destination)
        params = {"_count": str(self.config.page_size)}
        if cursor:
            params["_since"] = cursor
        resp = await client.search("Task/_history", params)
        versions: list[dict[str, Any]] = []
        while True:
            resp.raise_for_status()
            page = resp.json()
            entries = page.get("entry") or []
            versions.extend(e["resource"] for e in entries if isinstance(e.get("resource"), dict))
            nxt = _next_link(page)
            if not nxt:
                break
            resp = await client.get_url(nxt)
        new = await self._append_answers(destination, history_answers(versions), versions)
        high = _highest_update(versions)
        if high is not None:
            await self.ledger.save_cursor(destination, high.isoformat())
        self.events_appended += new
        return new

    async def _poll_current(self, destination: str) -> int:
        """``read: current``: the Tasks' current state, page by page (cursor after each)."""
        client = self.clients[destination]
        cursor = await self.ledger.load_cursor(destination)
        params = {"_sort": "_lastUpdated", "_count": str(self.config.page_size)}
        if cursor:
            params["_lastUpdated"] = f"ge{cursor}"
        resp = await client.search("Task", params)
        new = 0
        while True:
            resp.raise_for_status()
            page = resp.json()
            tasks = [e.get("resource") or {} for e in page.get("entry") or []]
            answers = [a for t in tasks if (a := read_task(t, tasks)) is not None and a.kind is not None]
            new += await self._append_answers(destination, answers, tasks)
            high = _highest_update(tasks)
            if high is not None:
                await self.ledger.save_cursor(destination, high.isoformat())
            nxt = _next_link(page)
            if not nxt:
                break
            resp = await client.get_url(nxt)
        self.events_appended += new
        return new

    async def _append_answers(
        self, destination: str, found: list[TaskAnswer], tasks: list[dict[str, Any]]
    ) -> int:
        """Append the answer events of ``found`` (a Task naming a referral the hub never
        sent is dead-lettered); returns how many were new."""
        by_id = {str(t.get("id", "")): t for t in tasks}
        envs = []
        for ans in found:
            assert ans.kind is not None
            row = await self.ledger.find_referral(ans.referral_id, "fhir")
            if row is None:
                dl = build_dead_letter(
                    source=f"ehr/fhir/{destination}",
                    source_family="ehr",
                    record_ref=f"Task/{ans.task_id}",
                    stage="inbound",
                    reason="Task names a referral this hub never sent over FHIR",
                    raw=json.dumps(by_id.get(ans.task_id, {})).encode(),
                    sealer=self.deps.deadletter_sealer,
                )
                await self.deps.log.dead_letters([dl])
                continue
            note = None
            demographics = None
            if ans.note or ans.demographics:
                keys = await self.deps.keyring.resolve([row.person], create=True)
                with contextlib.suppress(KeyDestroyedError):  # erased: keep the answer, not the note
                    if ans.note:
                        note = seal(keys, row.person, {"text": ans.note},
                                    context=seal_context(destination, row.referral_id, ans.kind, "note"))
                    if ans.demographics:
                        demographics = seal(
                            keys, row.person, ans.demographics,
                            context=seal_context(destination, row.referral_id, ans.kind, "demographics"))
            envs.append(
                answer_event(
                    ans.kind,
                    referral_id=row.referral_id,
                    person=row.person,
                    destination=row.destination,
                    at=ans.changed_at or datetime.now(UTC),
                    remote_id=f"Task/{ans.task_id}",
                    source_status=ans.status,
                    note=note,
                    causation_id=row.request_event_id,
                    demographics=demographics,
                )
            )
        if not envs:
            return 0
        return len((await self.deps.log.append(envs)).appended)


def _next_link(page: dict[str, Any]) -> str | None:
    return next((link.get("url") for link in page.get("link") or [] if link.get("relation") == "next"), None)


def _highest_update(tasks: list[dict[str, Any]]) -> datetime | None:
    """The highest ``meta.lastUpdated`` of the hub's Tasks among ``tasks`` (the cursor)."""
    times = [a.last_updated for t in tasks if (a := read_task(t)) is not None and a.last_updated]
    return max(times) if times else None
