"""The simulated EHR's memory (pure: time and randomness are passed in).

:class:`FhirStore` processes transaction Bundles the way a conforming server does —
validate, honour ``If-None-Exist`` conditional creates, resolve ``urn:uuid`` references —
and advances each Task through requested → accepted → in-progress → completed (a share
declined instead). :class:`Hl7Store` remembers REF^I12 messages by MSH-10 (a resend is
acknowledged again, not stored again) and plans the RRI^I12 answers.

Both count ``duplicates``: a referral (business identifier / RF1-6) stored a second time.
A correct hub keeps it at 0 however many resends the faults provoke
(``resends_deduplicated`` counts those).

Two clocks: :class:`Lifecycle` says *when* (real seconds after receipt) the simulated clinic
makes each status change visible, so a demo does not wait for days; :class:`Timeline` says
*what time the clinic reports* for it, the way a real EHR stamps its own changes
(``Task.lastModified``, the RRI^I12's MSH-7): the referral's own time (``Task.authoredOn`` /
RF1-7, else the time of receipt) plus seeded clinical delays — accepted or declined hours to
about three days later, completed three to twenty days later. A reported time is never later
than the wall clock at the change, so a live referral (authored just now) gets answers
stamped with the real time of the change, and a historical one (a demo's simulated month)
gets answers in its own month. Per referral, the decline decision and the delays are drawn
from ``(seed, referral id)``, so they do not depend on arrival order.
"""

from __future__ import annotations

import copy
import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from connectors.fhir.bundle import BundleInvalid, validate_bundle
from connectors.hl7v2.ack import AckCode
from connectors.referrals.content import REFERRAL_SYSTEM, TASK_SYSTEM
from hub.devtools.ehr_sim.demographics import fhir_patient


@dataclass(frozen=True)
class Timeline:
    """The clinic's reported delays after the referral's time (ranges drawn uniformly)."""

    accept_hours: tuple[float, float] = (2.0, 72.0)  # accepted (or declined) after
    complete_days: tuple[float, float] = (3.0, 20.0)  # completed after
    progress_share: tuple[float, float] = (0.05, 0.3)  # in-progress: this share of accepted→completed

    def plan(self, seed: int, referral_id: str, referred_at: datetime, decline_rate: float) -> ReferralPlan:
        """The referral's simulated course (pure: the same inputs give the same plan)."""
        rng = random.Random(f"{seed}\x1f{referral_id}")
        declines = rng.random() < decline_rate
        answered = referred_at + timedelta(hours=rng.uniform(*self.accept_hours))
        completed = referred_at + timedelta(days=rng.uniform(*self.complete_days))
        completed = max(completed, answered + timedelta(hours=1))
        progress = answered + (completed - answered) * rng.uniform(*self.progress_share)
        return ReferralPlan(
            declines=declines,
            reported={
                "accepted": answered,
                "rejected": answered,
                "in-progress": progress,
                "completed": completed,
            },
        )


@dataclass(frozen=True)
class ReferralPlan:
    """Whether the clinic declines a referral, and the time it reports for each status
    (FHIR Task statuses; :data:`RF1_STATUS` maps RRI codes onto them)."""

    declines: bool
    reported: dict[str, datetime]

    def reported_at(self, status: str, now: datetime, after: datetime | None = None) -> datetime:
        """The time the clinic stamps on ``status``: its planned time, but never later than
        ``now`` (no answers from the future) nor earlier than ``after`` (its previous stamp)."""
        at = min(self.reported.get(status, now), now)
        return max(at, after) if after is not None else at


@dataclass
class Lifecycle:
    """When answers become visible (real seconds after receipt), how many referrals are
    declined, and which times the clinic reports for them (:class:`Timeline`)."""

    accept_after_s: float = 0.5
    progress_after_s: float = 1.0
    complete_after_s: float = 1.5
    decline_rate: float = 0.1
    timeline: Timeline = field(default_factory=Timeline)


RF1_STATUS = {"A": "accepted", "R": "rejected", "C": "completed"}


def _time(value: Any) -> datetime | None:
    """An ISO ``dateTime`` from a resource (a date or a zone-less value read as UTC), or
    None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _operation_outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def _parse_if_none_exist(query: str) -> tuple[str, str] | None:
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "identifier" and "|" in value:
            system, _, raw = value.partition("|")
            raw = unquote(raw)
            out, i = [], 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw):
                    out.append(raw[i + 1])
                    i += 2
                else:
                    out.append(raw[i])
                    i += 1
            return system, "".join(out)
    return None


@dataclass
class FhirStore:
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    id_uses: dict[str, int] = field(default_factory=dict)
    seed: int = 7
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # type -> id -> resource
    #: every stored version of every Task, oldest first (``GET Task/_history``)
    task_history: list[dict[str, Any]] = field(default_factory=list)
    by_identifier: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (type, sys, val) -> id
    # task id -> (received at, the referral's planned course)
    plans: dict[str, tuple[datetime, ReferralPlan]] = field(default_factory=dict)
    transactions: int = 0
    invalid: int = 0
    duplicates: int = 0
    resends_deduplicated: int = 0
    referral_creates: dict[str, int] = field(default_factory=dict)

    def _new_id(self, rtype: str, res: dict[str, Any]) -> str:
        """A server-assigned id: derived from the seed and the resource's first business
        identifier (the n-th create of one identifier gets the n-th id), so the same
        referrals get the same ids in any arrival order — a clean and a faulted run of the
        fault suite compare equal; resources without an identifier draw from the seeded rng."""
        ident: dict[str, Any] = next(iter(res.get("identifier") or []), {})
        if not ident.get("value"):
            return str(uuid.UUID(int=self.rng.getrandbits(128)))
        key = f"{self.seed}\x1f{rtype}\x1f{ident.get('system', '')}\x1f{ident['value']}"
        n = self.id_uses.get(key, 0)
        self.id_uses[key] = n + 1
        return str(uuid.UUID(bytes=hashlib.sha256(f"{key}\x1f{n}".encode()).digest()[:16]))

    def transaction(self, bundle: dict[str, Any], now: datetime) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for one POSTed transaction Bundle."""
        try:
            validate_bundle(bundle)
        except BundleInvalid as exc:
            self.invalid += 1
            return 400, _operation_outcome("invalid", str(exc))
        if bundle.get("type") != "transaction":
            self.invalid += 1
            return 400, _operation_outcome("invalid", "only transaction Bundles are accepted")
        self.transactions += 1
        lc = self.lifecycle
        resolved: dict[str, str] = {}
        plan: list[tuple[dict[str, Any], str, bool]] = []
        for entry in bundle.get("entry") or []:
            res = copy.deepcopy(entry["resource"])
            rtype = res["resourceType"]
            req = entry.get("request") or {}
            existing = None
            cond = _parse_if_none_exist(req.get("ifNoneExist", "")) if req.get("ifNoneExist") else None
            if cond is not None:
                existing = self.by_identifier.get((rtype, *cond))
            rid = existing or self._new_id(rtype, res)
            resolved[entry.get("fullUrl", "")] = f"{rtype}/{rid}"
            plan.append((res, rid, existing is not None))
        out_entries = []
        for res, rid, existed in plan:
            rtype = res["resourceType"]
            if existed:
                if rtype == "ServiceRequest":
                    self.resends_deduplicated += 1
                out_entries.append(
                    {"response": {"status": "200 OK", "location": f"{rtype}/{rid}/_history/1"}}
                )
                continue
            _resolve_refs(res, resolved)
            if rtype == "Task":  # the EHR's record of the person travels with its answers
                res["contained"] = [fhir_patient(self._person_of(res) or rid)]
            res["id"] = rid
            res["meta"] = {**res.get("meta", {}), "versionId": "1", "lastUpdated": now.isoformat()}
            self.resources.setdefault(rtype, {})[rid] = res
            if rtype == "Task":
                self.task_history.append(copy.deepcopy(res))
            for ident in res.get("identifier") or []:
                key = (rtype, ident.get("system", ""), ident.get("value", ""))
                if rtype == "ServiceRequest" and ident.get("system") == REFERRAL_SYSTEM:
                    n = self.referral_creates.get(key[2], 0) + 1
                    self.referral_creates[key[2]] = n
                    if n > 1:
                        self.duplicates += 1
                self.by_identifier[key] = rid
            if rtype == "Task":
                referral_id = next(
                    (
                        i.get("value", "")
                        for i in res.get("identifier") or []
                        if i.get("system") == TASK_SYSTEM
                    ),
                    rid,
                )
                referred_at = _time(res.get("authoredOn")) or now
                self.plans[rid] = (
                    now,
                    lc.timeline.plan(self.seed, referral_id, referred_at, lc.decline_rate),
                )
            out_entries.append(
                {"response": {"status": "201 Created", "location": f"{rtype}/{rid}/_history/1"}}
            )
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": out_entries}

    def _person_of(self, task: dict[str, Any]) -> str | None:
        """The pseudonym (Patient.identifier) of the Patient a Task is for."""
        ref = str((task.get("for") or {}).get("reference") or "")
        patient = self.resources.get("Patient", {}).get(ref.removeprefix("Patient/"))
        idents = (patient or {}).get("identifier") or []
        return str(idents[0].get("value")) if idents else None

    def advance(self, now: datetime) -> int:
        """Move Tasks along their lifecycle (``now``: the wall clock); returns how many
        changed. ``meta.lastUpdated`` is the server's record time (``now``, what
        ``_lastUpdated`` searches page by); ``lastModified`` is the clinic's reported time of
        the change (see :class:`Timeline`)."""
        lc = self.lifecycle
        changed = 0
        for tid, (received, plan) in list(self.plans.items()):
            task = self.resources["Task"][tid]
            age = (now - received).total_seconds()
            target = task["status"]
            if plan.declines and age >= lc.accept_after_s:
                target = "rejected"
            elif age >= lc.complete_after_s:
                target = "completed"
            elif age >= lc.progress_after_s:
                target = "in-progress"
            elif age >= lc.accept_after_s:
                target = "accepted"
            if target != task["status"]:
                task["status"] = target
                at = plan.reported_at(target, now, after=_time(task.get("lastModified")))
                task["lastModified"] = at.isoformat()
                if target == "in-progress":
                    task["executionPeriod"] = {"start": at.isoformat()}
                elif target == "completed":
                    start = (task.get("executionPeriod") or {}).get("start") or at.isoformat()
                    task["executionPeriod"] = {"start": start, "end": at.isoformat()}
                if target == "rejected":
                    task["statusReason"] = {"text": "No capacity for new clients"}
                meta = task["meta"]
                meta["versionId"] = str(int(meta["versionId"]) + 1)
                meta["lastUpdated"] = now.isoformat()
                self.task_history.append(copy.deepcopy(task))
                changed += 1
            if target in ("completed", "rejected"):
                del self.plans[tid]
        return changed

    def search_tasks(self, updated_since: datetime | None, count: int, offset: int) -> tuple[list[dict], int]:
        tasks = sorted(
            self.resources.get("Task", {}).values(), key=lambda t: (t["meta"]["lastUpdated"], t["id"])
        )
        if updated_since is not None:
            tasks = [t for t in tasks if datetime.fromisoformat(t["meta"]["lastUpdated"]) >= updated_since]
        return tasks[offset : offset + count], len(tasks)

    def task_versions(self, since: datetime | None, count: int, offset: int) -> tuple[list[dict], int]:
        """Task versions stored at or after ``since`` (``meta.lastUpdated``), newest first as
        a FHIR history Bundle lists them, paged by ``offset``/``count``; and their total."""
        versions = [
            v for v in self.task_history
            if since is None or datetime.fromisoformat(v["meta"]["lastUpdated"]) >= since
        ]
        versions.reverse()
        return versions[offset : offset + count], len(versions)

    def find(self, rtype: str, system: str, value: str) -> dict[str, Any] | None:
        """The resource of ``rtype`` carrying identifier ``system|value`` (a search by
        business identifier), or None."""
        rid = self.by_identifier.get((rtype, system, value))
        return self.resources.get(rtype, {}).get(rid) if rid else None

    def referral_ids(self) -> set[str]:
        return set(self.referral_creates)

    def task_for_referral(self, referral_id: str) -> dict[str, Any] | None:
        tid = self.by_identifier.get(("Task", TASK_SYSTEM, referral_id))
        return self.resources["Task"][tid] if tid else None


def _resolve_refs(node: Any, resolved: dict[str, str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in resolved:
                node[k] = resolved[v]
            else:
                _resolve_refs(v, resolved)
    elif isinstance(node, list):
        for item in node:
            _resolve_refs(item, resolved)


@dataclass
class StoredRef:
    control_id: str
    referral_id: str
    person: str
    received_at: datetime
    plan: ReferralPlan
    answered: list[str] = field(default_factory=list)  # RF1-1 codes sent back so far
    last_reported: datetime | None = None  # the time stamped on the last answer sent

    @property
    def declines(self) -> bool:
        return self.plan.declines


@dataclass
class Hl7Store:
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    seed: int = 11
    #: control id → (stored referral, the ACK code given)
    by_control_id: dict[str, tuple[StoredRef | None, AckCode]] = field(default_factory=dict)
    referral_stores: dict[str, int] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    resends_deduplicated: int = 0

    def seen(self, control_id: str) -> AckCode | None:
        """The ACK code already given to this control id, if any (a resend)."""
        hit = self.by_control_id.get(control_id)
        if hit is not None:
            self.resends_deduplicated += 1
            return hit[1]
        return None

    def store(
        self,
        control_id: str,
        referral_id: str,
        person: str,
        now: datetime,
        ack_code: AckCode,
        referred_at: datetime | None = None,
    ) -> None:
        """Remember one REF^I12 (``referred_at``: its RF1-7 effective date, the referral's
        time; the receipt time ``now`` when absent)."""
        ref = None
        if ack_code == "AA":
            n = self.referral_stores.get(referral_id, 0) + 1
            self.referral_stores[referral_id] = n
            if n > 1:
                self.duplicates += 1
            lc = self.lifecycle
            plan = lc.timeline.plan(self.seed, referral_id, referred_at or now, lc.decline_rate)
            ref = StoredRef(control_id, referral_id, person, now, plan)
        self.by_control_id[control_id] = (ref, ack_code)

    def due_answers(self, now: datetime) -> list[tuple[StoredRef, str, datetime]]:
        """(referral, RF1-1 code, reported time) answers that are due and not yet sent
        (``now``: the wall clock; the reported time follows :class:`Timeline`). The caller
        records a sent answer with :meth:`answered`."""
        lc = self.lifecycle
        due = []
        for ref, _ in self.by_control_id.values():
            if ref is None:
                continue
            age = (now - ref.received_at).total_seconds()
            codes = []
            if ref.declines:
                if age >= lc.accept_after_s and "R" not in ref.answered:
                    codes.append("R")
            else:
                if age >= lc.accept_after_s and "A" not in ref.answered:
                    codes.append("A")
                if age >= lc.complete_after_s and "C" not in ref.answered and "A" in ref.answered:
                    codes.append("C")
            for code in codes:
                due.append((ref, code, ref.plan.reported_at(RF1_STATUS[code], now, after=ref.last_reported)))
        return due

    @staticmethod
    def answered(ref: StoredRef, code: str, at: datetime) -> None:
        """Record that the answer ``code`` stamped ``at`` reached the hub."""
        ref.answered.append(code)
        ref.last_reported = at if ref.last_reported is None else max(ref.last_reported, at)

    def referral_ids(self) -> set[str]:
        return set(self.referral_stores)


def utcnow() -> datetime:
    return datetime.now(UTC)
