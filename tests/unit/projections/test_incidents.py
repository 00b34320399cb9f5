"""The incident row and the intake form: the current revision of each form (the highest)
gives the team's on-scene outcome and the use of force, whatever order the facts arrive in;
an older on-scene report never overrides an amendment of a later form."""

from __future__ import annotations

from datetime import timedelta

from projections import tables as T
from projections.config import FoldConfig
from projections.fold import derive
from schemas.dispatch import CallDisposition, CallReceived
from schemas.encounter import IntakeRecorded, OnSceneOutcome
from tests.unit.projections.projection_events import INCIDENTS, at, fact

CFG = FoldConfig(connected_window=timedelta(days=30), repeat_window=timedelta(days=365), timezone="UTC")
INC = INCIDENTS[0]
SUB = "0b7cf0d4-5d2c-4f55-9b53-0c3f0a8f2a11"


def form(revision: int, outcome: str, force: str | None, minute: float = 20) -> object:
    return fact(
        IntakeRecorded(
            incident_id=INC,
            at=at(minute),
            submission_id=SUB,
            revision=revision,
            program="p",
            clinician_id="c1",
            mode="co_response",
            outcome=outcome,
            use_of_force=force,  # type: ignore[arg-type]
        )
    )


def row(facts: list) -> dict:
    return derive(facts, CFG)[T.INCIDENT_SUMMARY.name][(INC,)]


def call() -> object:
    return fact(
        CallReceived(
            incident_id=INC,
            agency="sea",
            cad_number="1001",
            at=at(0),
            source_timezone="UTC",
            category="behavioral_health",
            behavioral_health=True,
        )
    )


def test_the_highest_revision_wins_in_any_order() -> None:
    facts = [call(), form(0, "voluntary_transport", "none"), form(1, "involuntary_hold", "restraints")]
    for order in (facts, list(reversed(facts))):
        r = row(order)
        assert (r["onscene_outcome"], r["outcome"], r["use_of_force"]) == (
            "involuntary_hold",
            "involuntary_hold",
            "restraints",
        )
        assert r["co_responder"] is False  # a form alone is not a co-responder unit or engagement


def test_a_form_and_other_scene_reports_are_ordered_by_time() -> None:
    r = row(
        [
            call(),
            fact(CallDisposition(incident_id=INC, at=at(60), outcome="no_enforcement")),
            fact(OnSceneOutcome(incident_id=INC, at=at(10), outcome="emergency_department")),
            form(0, "voluntary_transport", None, minute=30),
        ]
    )
    assert (r["onscene_outcome"], r["outcome"], r["use_of_force"]) == (
        "voluntary_transport",
        "voluntary_transport",
        None,
    )
    assert row([call()])["use_of_force"] is None
