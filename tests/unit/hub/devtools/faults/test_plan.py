"""The fault plan: seeded (same seed, same faults), every kind present, enough SIGKILLs."""

from __future__ import annotations

import pytest

from hub.devtools.faults.plan import fault_plan

PROCS = ["ingest", "app", "delivery", "projector"]
KINDS = {
    "leader_kill",
    "two_brokers_down",
    "process_kill",
    "pg_immediate",
    "pg_fast",
    "append_cut",
    "ehr_flapping",
    "ehr_hung",
}


def test_short_plan_has_one_of_each_fault_and_kills_every_process() -> None:
    plan = fault_plan(1, PROCS, long=False, window_s=40)
    kinds = [f.kind for f in plan]
    assert set(kinds) == KINDS
    assert all(kinds.count(k) == 1 for k in KINDS - {"process_kill"})
    assert sorted(f.target for f in plan if f.kind == "process_kill") == sorted(PROCS)
    assert all(1.0 <= f.at <= 40 for f in plan)
    assert plan == sorted(plan)


def test_long_plan_repeats_every_fault_with_at_least_twenty_kills() -> None:
    plan = fault_plan(7, PROCS, long=True, window_s=240)
    kinds = [f.kind for f in plan]
    assert kinds.count("process_kill") >= 20
    assert all(kinds.count(k) >= 2 for k in KINDS - {"process_kill"})
    assert {f.target for f in plan if f.kind == "process_kill"} == set(PROCS)


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert fault_plan(3, PROCS, long=True, window_s=120) == fault_plan(3, PROCS, long=True, window_s=120)
    assert fault_plan(3, PROCS, long=True, window_s=120) != fault_plan(4, PROCS, long=True, window_s=120)


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fault_plan(1, [], long=False, window_s=40)
    with pytest.raises(ValueError, match="at least 30"):
        fault_plan(1, PROCS, long=False, window_s=10)
