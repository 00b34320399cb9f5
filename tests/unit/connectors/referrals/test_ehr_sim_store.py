"""The simulator's stores: conditional creates, MSH-10 dedup, duplicate counting, lifecycle."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from connectors.ehr_sim.store import FhirStore, Hl7Store, Lifecycle
from connectors.fhir.bundle import build_referral_bundle
from connectors.referrals.content import Disclosure, Endpoint, ReferralReason
from schemas.referral import ReferralRequested

NOW = datetime(2024, 6, 1, tzinfo=UTC)
PSN = "psn_" + "d" * 32


def bundle(rid: str) -> dict:
    req = ReferralRequested(
        referral_id=rid,
        person=PSN,
        at=NOW,
        destination="c",
        channel="fhir",
        service_type="behavioral_health",
        requester="t",
    )
    return build_referral_bundle(
        Disclosure(
            event_id="e-" + rid,
            request=req,
            reason=ReferralReason(text="x"),
            requester=Endpoint(id="t", display="T"),
            performer=Endpoint(id="c", display="C"),
        )
    )


def test_conditional_creates_make_resends_harmless_and_count_real_duplicates() -> None:
    store = FhirStore(lifecycle=Lifecycle(decline_rate=0.0))
    status, body = store.transaction(bundle("R|1,x"), NOW)  # search-escaped identifier survives
    assert status == 200 and all(e["response"]["status"] == "201 Created" for e in body["entry"])
    task = store.task_for_referral("R|1,x")
    assert task is not None and task["focus"]["reference"].startswith("ServiceRequest/")
    status, again = store.transaction(bundle("R|1,x"), NOW)
    assert [e["response"]["status"] for e in again["entry"]] == ["200 OK"] * 3
    assert (store.duplicates, store.resends_deduplicated) == (0, 1)
    naive = copy.deepcopy(bundle("R|1,x"))
    for e in naive["entry"]:
        del e["request"]["ifNoneExist"]
    store.transaction(naive, NOW)
    assert store.duplicates == 1  # a sender without conditional creates is caught
    status, oo = store.transaction(
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Task"}}]},
        NOW,
    )
    assert status == 400 and oo["resourceType"] == "OperationOutcome"


def test_task_lifecycle_moves_forward() -> None:
    store = FhirStore(
        lifecycle=Lifecycle(accept_after_s=1, progress_after_s=2, complete_after_s=3, decline_rate=0)
    )
    store.transaction(bundle("R-2"), NOW)
    seen = []
    for s in range(5):
        store.advance(NOW + timedelta(seconds=s))
        seen.append(store.task_for_referral("R-2")["status"])  # type: ignore[index]
    assert seen == ["requested", "accepted", "in-progress", "completed", "completed"]
    tasks, total = store.search_tasks(NOW + timedelta(seconds=3), 10, 0)
    assert total == 1 and tasks[0]["meta"]["versionId"] == "4"


def test_hl7_store_dedups_by_control_id() -> None:
    store = Hl7Store(lifecycle=Lifecycle(accept_after_s=1, complete_after_s=2, decline_rate=0))
    assert store.seen("H1") is None
    store.store("H1", "R-1", PSN, NOW, "AA")
    assert store.seen("H1") == "AA" and store.resends_deduplicated == 1
    store.store("H2", "R-1", PSN, NOW, "AA")  # same referral under a new control id
    assert store.duplicates == 1
    due = store.due_answers(NOW + timedelta(seconds=1))
    assert {code for _, code in due} == {"A"}
