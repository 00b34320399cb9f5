"""Why a fault run is not quiescent: the suite's error names what it waited for (a long run
once failed with only "a process stopped making progress", and it was not a process)."""

from __future__ import annotations

from hub.devtools.faults.suite import not_quiescent, stalls


def test_names_the_partitions_the_projector_has_not_reached_and_open_deliveries() -> None:
    ends = {"p.facts.referral/0": 12, "p.facts.referral/1": 7, "p.facts.dispatch/0": 40}
    positions = {"p.facts.referral/0": 12, "p.facts.referral/1": 5}
    why = not_quiescent(True, True, (ends, positions, 2), "")
    assert "projector behind on 2 partition(s)" in why
    assert "p.facts.referral/1 5/7" in why and "p.facts.dispatch/0 0/40" in why
    assert "p.facts.referral/0" not in why
    assert "2 delivery row(s) open" in why


def test_names_unfinished_jobs_and_faults_and_a_failing_snapshot() -> None:
    why = not_quiescent(False, False, None, "KafkaConnectionError: Unable to bootstrap")
    assert "jobs not done" in why and "faults not undone" in why
    assert "last snapshot failed: KafkaConnectionError" in why


def test_a_run_that_never_settled_says_so() -> None:
    assert not_quiescent(True, True, None, "") == "no snapshot of the log and the ledger was ever taken"
    assert not_quiescent(True, True, ({"t/0": 3}, {"t/0": 3}, 0), "") == "still changing"


def test_a_projector_stopped_by_its_watchdog_counts_as_hung() -> None:
    text = (
        "2026-12-01 18:59:24,744 ERROR projections.projector: projector stalled, stopping: projector made "
        "no progress for 301s (limit probe_stale_s=300s): no batch applied and not caught up\n"
        "=== exit 75\n"
    )
    assert stalls(text) == 1
    assert stalls("project: batches 3, records 9\n=== exit 0\n") == 0
