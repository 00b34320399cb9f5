"""FHIR Task poller: the EHR's Task status changes become referral answer events.

Per destination, ``GET [base]/Task?_lastUpdated=ge<cursor>&_sort=_lastUpdated&_count=N``
(following ``next`` links); the cursor (highest ``meta.lastUpdated`` seen) is stored in
PostgreSQL after each page's events are in the log. ``ge`` rather than ``gt`` re-reads the
boundary Tasks, which is harmless: answer events have deterministic ids. Only Tasks carrying
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def read_task(task: dict[str, Any]) -> TaskAnswer | None:
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
        rid, str(task.get("id", "")), status, TASK_STATUS_ANSWERS.get(status), note, last, changed
    )


class PollerDestination(FhirEndpoint):
    model_config = ConfigDict(extra="ignore")


class PollerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(5.0, gt=0)
    page_size: int = Field(100, ge=1, le=1000)
    destinations: dict[str, PollerDestination]


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
            high: datetime | None = None
            envs = []
            for entry in page.get("entry") or []:
                task = entry.get("resource") or {}
                ans = read_task(task)
                if ans is None:
                    continue
                if ans.last_updated and (high is None or ans.last_updated > high):
                    high = ans.last_updated
                if ans.kind is None:
                    continue
                row = await self.ledger.find_referral(ans.referral_id, "fhir")
                if row is None:
                    dl = build_dead_letter(
                        source=f"ehr/fhir/{destination}",
                        source_family="ehr",
                        record_ref=f"Task/{ans.task_id}",
                        stage="inbound",
                        reason="Task names a referral this hub never sent over FHIR",
                        raw=json.dumps(task).encode(),
                        sealer=self.deps.deadletter_sealer,
                    )
                    await self.deps.log.dead_letters([dl])
                    continue
                note = None
                if ans.note:
                    keys = await self.deps.keyring.resolve([row.person], create=True)
                    with contextlib.suppress(KeyDestroyedError):  # erased: keep the answer, not the note
                        note = seal(keys, row.person, {"text": ans.note},
                                    context=seal_context(destination, row.referral_id, ans.kind, "note"))
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
                    )
                )
            if envs:
                result = await self.deps.log.append(envs)
                new += len(result.appended)
            if high is not None:
                await self.ledger.save_cursor(destination, high.isoformat())
            nxt = next(
                (link.get("url") for link in page.get("link") or [] if link.get("relation") == "next"), None
            )
            if not nxt:
                break
            resp = await client.get_url(nxt)
        self.events_appended += new
        return new
