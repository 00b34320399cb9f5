"""The incident row and the intake form: the current revision of each form (the highest)
gives the team's on-scene outcome and the use of force, whatever order the facts arrive in;
an older on-scene report never overrides an amendment of a later form."""

from __future__ import annotations

from datetime import timedelta

from projections import tables as T
from projections.config import FoldConfig
from projections.fold import derive
from schemas.case import ContactLogged
from schemas.dispatch import CallDisposition, CallReceived, CallRevised, UnitDispatched
from schemas.encounter import ClinicianEngaged, IntakeRecorded, OnSceneOutcome
from schemas.referral import ReferralRequested
from tests.unit.projections.projection_events import INCIDENTS, PERSONS, at, fact

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
            call_type_final="CRISIS",  # a behavioral-health call by the fallback vocabulary
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
            fact(CallDisposition(incident_id=INC, at=at(60), disposition_code="NO ACTION")),
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


def test_the_intervention_columns() -> None:
    r = row(
        [
            call(),
            fact(UnitDispatched(incident_id=INC, at=at(2), unit_id="CR-7", unit_kind="co_responder")),
            fact(
                ClinicianEngaged(
                    incident_id=INC, at=at(5), clinician_id="c1", program="coresp-1", mode="co_response"
                )
            ),
            form(0, "no_enforcement", "none"),
            fact(
                ReferralRequested(
                    referral_id="r1",
                    person=PERSONS[0],
                    at=at(40),
                    incident_id=INC,
                    destination="d",
                    channel="fhir",
                    service_type="outpatient_mh",
                    requester="coresp-1",
                )
            ),
        ]
    )
    assert (r["program"], r["mode"], r["team"], r["referral_type"]) == (
        "coresp-1",
        "co_response",
        "CR-7",
        "outpatient_mh",
    )
    assert (row([call()])["program"], row([call()])["mode"]) == (None, None)


def test_county_fields_come_from_cad_then_case_system_then_forms_in_any_order() -> None:
    cad = fact(CallReceived(incident_id=INC, agency="sea", cad_number="1001", at=at(0), source_timezone="UTC",
                            call_type_final="CRISIS", custom={"housing": "Unsheltered", "camp": "A"}))
    case = fact(ContactLogged(case_id="k1", person=PERSONS[0], at=at(30), incident_id=INC,
                              custom={"housing": "sheltered", "visits": 3}))
    form_ = fact(IntakeRecorded(incident_id=INC, at=at(20), submission_id=SUB, program="p", clinician_id="c1",
                                mode="co_response", outcome="referral", custom={"visits": 4}))
    for facts in ([cad, case, form_], [form_, case, cad]):
        assert row(facts)["custom"] == {"camp": "A", "housing": "sheltered", "visits": 4}
    assert row([cad])["custom"] == {"camp": "A", "housing": "Unsheltered"}  # the source's words, as given


def test_county_fields_a_cad_revision_corrects_in_revision_order_below_the_team_records() -> None:
    """A re-export's county values replace the received call's (the later revision by time
    wins; a field it leaves out keeps its value), and a case or intake value still wins."""
    cad = fact(CallReceived(incident_id=INC, agency="sea", cad_number="1001", at=at(0), source_timezone="UTC",
                            custom={"zone": "north", "camp": "A"}))
    first = fact(CallRevised(incident_id=INC, at=at(50), revision="r1",
                             custom={"zone": "south", "beds": "2"}))
    second = fact(CallRevised(incident_id=INC, at=at(90), revision="r2", custom={"zone": "east"}))
    assert row([second, first, cad])["custom"] == {"beds": "2", "camp": "A", "zone": "east"}
    assert row([first, cad])["custom"] == {"beds": "2", "camp": "A", "zone": "south"}
    assert row([cad, fact(CallRevised(incident_id=INC, at=at(60), revision="r3"))])["custom"] == {
        "camp": "A", "zone": "north"}  # a revision without county values changes none
    form_ = fact(IntakeRecorded(incident_id=INC, at=at(20), submission_id=SUB, program="p", clinician_id="c1",
                                mode="co_response", outcome="referral", custom={"zone": "west"}))
    case = fact(ContactLogged(case_id="k1", person=PERSONS[0], at=at(30), incident_id=INC,
                              custom={"beds": "0"}))
    assert row([second, form_, first, case, cad])["custom"] == {"beds": "0", "camp": "A", "zone": "west"}
