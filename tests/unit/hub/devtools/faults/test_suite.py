"""Why a fault run is not quiescent: the suite's error names what it waited for (a long run
once failed with only "a process stopped making progress", and it was not a process), and a
delivery intake that stopped taking referral requests in keeps the run from settling (seed 7:
its stall looked like three lost outcome events)."""

from __future__ import annotations

from hub.devtools.faults.suite import Snapshot, not_quiescent, stalls

REF = "p.facts.referral"
ENDS = {f"{REF}/0": 12, f"{REF}/1": 7, "p.facts.dispatch/0": 40}
TAKEN = {f"{REF}/0": 12, f"{REF}/1": 7}
ALL_IN = {"p-delivery-fhir": TAKEN, "p-delivery-hl7v2": TAKEN}


def snap(positions: dict[str, int], open_rows: int = 0, intakes: dict | None = None) -> Snapshot:
    return Snapshot(ENDS, positions, open_rows, REF, ALL_IN if intakes is None else intakes)


def test_names_the_partitions_the_projector_has_not_reached_and_open_deliveries() -> None:
    why = not_quiescent(True, True, snap({f"{REF}/0": 12, f"{REF}/1": 5}, 2), "")
    assert "projector behind on 2 partition(s)" in why
    assert f"{REF}/1 5/7" in why and "p.facts.dispatch/0 0/40" in why
    assert f"{REF}/0 12/12" not in why
    assert "2 delivery row(s) open" in why


def test_a_delivery_intake_that_stopped_taking_requests_in_is_not_quiet() -> None:
    intakes = {**ALL_IN, "p-delivery-fhir": {f"{REF}/0": 12, f"{REF}/1": 5}}
    stuck = snap(dict(ENDS), intakes=intakes)
    assert not stuck.quiet()
    assert stuck.intakes_behind() == [f"p-delivery-fhir {REF}/1 5/7"]
    assert "delivery intake behind on 1 partition(s): p-delivery-fhir" in not_quiescent(True, True, stuck, "")
    assert snap(dict(ENDS)).quiet()


def test_names_unfinished_jobs_and_faults_and_a_failing_snapshot() -> None:
    why = not_quiescent(False, False, None, "KafkaConnectionError: Unable to bootstrap")
    assert "jobs not done" in why and "faults not undone" in why
    assert "last snapshot failed: KafkaConnectionError" in why


def test_a_run_that_never_settled_says_so() -> None:
    assert not_quiescent(True, True, None, "") == "no snapshot of the log and the ledger was ever taken"
    assert not_quiescent(True, True, snap(dict(ENDS)), "") == "still changing"


def test_a_projector_stopped_by_its_watchdog_counts_as_hung() -> None:
    text = (
        "2026-12-01 18:59:24,744 ERROR projections.projector: projector stalled, stopping: projector made "
        "no progress for 301s (limit probe_stale_s=300s): no batch applied and not caught up\n"
        "=== exit 75\n"
    )
    assert stalls(text) == 1
    assert stalls("project: batches 3, records 9\n=== exit 0\n") == 0
