"""The simulator's stores: conditional creates, MSH-10 dedup, duplicate counting, lifecycle."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from connectors.fhir.bundle import build_referral_bundle
from connectors.referrals.content import Disclosure, Endpoint, ReferralReason
from hub.devtools.ehr_sim.store import FhirStore, Hl7Store, Lifecycle, Timeline
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
    assert {code for _, code, _ in due} == {"A"}


def test_task_changes_are_reported_at_the_clinics_times_after_the_referral() -> None:
    """Lifecycle paces the changes in real seconds; Task.lastModified carries the clinic's
    own time: hours to ~3 days after authoredOn to accept, 3-20 days to complete."""
    store = FhirStore(
        lifecycle=Lifecycle(accept_after_s=1, progress_after_s=2, complete_after_s=3, decline_rate=0),
        seed=3,
    )
    wall = datetime(2026, 1, 1, tzinfo=UTC)  # the demo runs long after its simulated month
    store.transaction(bundle("R-5"), wall)
    stamps = {}
    for s in range(5):
        store.advance(wall + timedelta(seconds=s))
        task = store.task_for_referral("R-5")
        assert task is not None
        if "lastModified" in task:
            stamps[task["status"]] = datetime.fromisoformat(task["lastModified"])
            assert task["meta"]["lastUpdated"] <= (wall + timedelta(seconds=s)).isoformat()
    accepted, progress, completed = stamps["accepted"], stamps["in-progress"], stamps["completed"]
    assert timedelta(hours=2) <= accepted - NOW <= timedelta(hours=72)
    assert accepted <= progress <= completed
    assert timedelta(days=3) <= completed - NOW <= timedelta(days=20)
    assert task["executionPeriod"] == {"start": progress.isoformat(), "end": completed.isoformat()}
    # the server's record time (the poll cursor) is the wall clock, not the reported time
    assert store.search_tasks(wall, 10, 0)[1] == 1


def test_reported_times_are_seeded_per_referral_and_never_in_the_future() -> None:
    tl = Timeline()
    a = tl.plan(9, "R-1", NOW, 0.1)
    assert a == tl.plan(9, "R-1", NOW, 0.1)  # same seed and referral: same course
    assert a != tl.plan(10, "R-1", NOW, 0.1)
    plans = [tl.plan(9, f"R-{i}", NOW, 0.2) for i in range(400)]
    assert 40 < sum(p.declines for p in plans) < 120
    for p in plans:
        assert NOW < p.reported["accepted"] <= p.reported["in-progress"] <= p.reported["completed"]
    soon = NOW + timedelta(minutes=5)  # a live referral answered minutes after it was made
    assert a.reported_at("accepted", soon) == soon
    assert a.reported_at("completed", soon, after=soon + timedelta(seconds=1)) == soon + timedelta(seconds=1)


def test_hl7_answers_carry_the_clinics_times() -> None:
    store = Hl7Store(lifecycle=Lifecycle(accept_after_s=1, complete_after_s=2, decline_rate=0), seed=4)
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    store.store("H9", "R-9", PSN, wall, "AA", referred_at=NOW)
    assert store.due_answers(wall) == []
    [(ref, code, at)] = store.due_answers(wall + timedelta(seconds=1))
    assert code == "A" and timedelta(hours=2) <= at - NOW <= timedelta(hours=72)
    assert store.due_answers(wall + timedelta(seconds=3))[0][1] == "A"  # not sent yet: due again
    store.answered(ref, code, at)
    [(_, code2, at2)] = store.due_answers(wall + timedelta(seconds=3))
    assert code2 == "C" and at2 > at and timedelta(days=3) <= at2 - NOW <= timedelta(days=20)
    store.store("H10", "R-10", PSN, wall, "AA")  # no RF1-7: the receipt time is the referral's
    [(_, _, at3)] = [d for d in store.due_answers(wall + timedelta(seconds=1)) if d[0].referral_id == "R-10"]
    assert at3 == wall + timedelta(seconds=1)  # capped at the wall clock: never from the future
