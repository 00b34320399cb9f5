"""The binding of a core schema's state to one Kafka cluster: the pure decision and the
refusal's message (hub.kernel.binding)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.binding import Action, ClusterMismatchError, Decision, decide

A, B = "sVzEYwCCSnyrLXlOo8QGhQ", "Qm9vdHN0cmFwQ2x1c3RlcjI"
P0, P1 = ("demo.facts.dispatch", 0), ("demo.facts.dispatch", 1)


def test_bound_to_this_cluster_is_kept() -> None:
    assert decide(A, A) == Decision(Action.KEEP, A, A)


def test_bound_to_another_cluster_is_refused_naming_it() -> None:
    d = decide(A, B)
    assert (d.action, d.recorded, d.actual) == (Action.REFUSE, A, B)
    assert A in d.reason


def test_recorded_binding_wins_over_index_positions() -> None:
    """Once bound, only the ids count: a consistent index does not excuse another cluster."""
    assert decide(A, B, indexed={P0: 0}, ends={P0: 100}).action is Action.REFUSE
    assert decide(A, A, indexed={P0: 500}, ends={}).action is Action.KEEP


def test_unbound_empty_state_is_bound() -> None:
    assert decide(None, B).action is Action.BIND
    assert decide(None, B, indexed={}, ends={P0: 3}).action is Action.BIND


def test_unbound_state_fitting_the_log_is_adopted() -> None:
    assert decide(None, B, indexed={P0: 9, P1: 0}, ends={P0: 10, P1: 1}).action is Action.BIND


def test_unbound_state_indexing_offsets_the_log_never_had_is_refused() -> None:
    """The reported bug: another checkout's index paired with an empty, new Kafka log."""
    d = decide(None, B, indexed={P0: 41, P1: 7}, ends={P0: 0})
    assert (d.action, d.recorded) == (Action.REFUSE, None)
    assert "2 partition(s)" in d.reason and "demo.facts.dispatch[0] indexed up to offset 41" in d.reason
    assert "log ends at 0" in d.reason


def test_offset_equal_to_the_end_is_beyond_the_log() -> None:
    """The end offset is the next offset to be written: an index at it cannot be this log."""
    assert decide(None, B, indexed={P0: 10}, ends={P0: 10}).action is Action.REFUSE


def test_a_missing_cluster_id_is_an_error_not_a_binding() -> None:
    with pytest.raises(ValueError, match="cluster id"):
        decide(None, "")


positions = st.tuples(st.sampled_from(["p.facts.a", "p.facts.b"]), st.integers(0, 3))


@given(
    st.dictionaries(positions, st.integers(0, 10_000), max_size=8),
    st.dictionaries(positions, st.integers(0, 10_000), max_size=8),
)
def test_unbound_decision_is_exactly_every_indexed_offset_below_its_end(
    indexed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> None:
    fits = all(o < ends.get(pos, 0) for pos, o in indexed.items())
    d = decide(None, A, indexed=indexed, ends=ends)
    assert d.action is (Action.BIND if fits else Action.REFUSE)
    assert (d.reason == "") is fits


@given(st.text("abcXYZ019-_", min_size=1, max_size=22), st.text("abcXYZ019-_", min_size=1, max_size=22))
def test_bound_decision_depends_on_the_ids_only(recorded: str, actual: str) -> None:
    d = decide(recorded, actual, indexed={P0: 5}, ends={})
    assert d.action is (Action.KEEP if recorded == actual else Action.REFUSE)


def test_refusal_message_names_both_ids_and_the_ways_out() -> None:
    err = ClusterMismatchError("demo_core", "127.0.0.1:9092", decide(A, B))
    text = str(err)
    assert A in text and B in text and "'demo_core'" in text and "127.0.0.1:9092" in text
    assert "hub infra rebind --yes" in text and "hub demo --reset" in text
    assert "matching backups" in text


def test_refusal_message_for_unbound_state_says_so() -> None:
    err = ClusterMismatchError("demo_core", "k:9092", decide(None, B, indexed={P0: 3}, ends={}))
    assert "state written before bindings existed" in str(err) and B in str(err)
