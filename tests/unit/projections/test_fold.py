"""Property and example tests of the pure projection folds."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import tables as T
from projections.config import FoldConfig
from projections.fold import ProjectionState, derive, fold, fold_batch
from projections.incidents import PRIMARY_OUTCOMES
from schemas.base import Area
from schemas.case import ServiceEnrolled
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitCleared,
    UnitDispatched,
    UnitOnScene,
)
from schemas.encounter import ClinicianEngaged, OnSceneOutcome, PersonIdentified
from schemas.identity import PersonLinked, PersonUnlinked
from schemas.referral import ReferralAccepted, ReferralCompleted, ReferralDelivered, ReferralRequested
from tests.unit.projections.projection_events import INCIDENTS, PERSONS, at, event_lists, fact

CFG = FoldConfig(connected_window=timedelta(days=30), repeat_window=timedelta(days=365), timezone="UTC")
P1, P2, P3, _ = PERSONS
INC = INCIDENTS[0]


def fold_all(facts, cfg=CFG):
    state = ProjectionState()
    for f in facts:
        state, _ = fold(state, f, cfg)
    return state.rows


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lists, st.randoms(use_true_random=False))
def test_any_permutation_and_duplication_gives_the_same_rows(facts, rnd):
    expected = derive(facts, CFG)
    shuffled = list(facts) + rnd.sample(facts, k=rnd.randint(0, len(facts)))
    rnd.shuffle(shuffled)
    assert fold_all(facts) == expected
    assert fold_all(shuffled) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_lists, st.randoms(use_true_random=False))
def test_batches_of_any_size_give_the_same_rows_as_single_folds(facts, rnd):
    shuffled = list(facts) * 2
    rnd.shuffle(shuffled)
    state = ProjectionState()
    i = 0
    while i < len(shuffled):
        n = rnd.randint(1, 7)
        state, _ = fold_batch(state, shuffled[i : i + n], CFG)
        i += n
    assert state.rows == derive(facts, CFG)


@settings(max_examples=120, deadline=None)
@given(event_lists)
def test_counts_are_conserved(facts):
    rows = derive(facts, CFG)
    cells = defaultdict(dict)
    for r in rows[T.OUTCOME_COUNTS.name].values():
        key = (
            r["period_kind"],
            r["period_start"],
            r["area_kind"],
            r["area"],
            r["call_category"],
            r["behavioral_health"],
        )
        cells[key][r["metric"]] = r["value"]
        assert r["value"] > 0
    for metrics in cells.values():
        outcomes = sum(metrics.get(f"outcome.{o}", 0) for o in PRIMARY_OUTCOMES)
        assert outcomes == metrics.get("with_outcome", 0)
        assert metrics.get("calls", 0) == metrics.get("with_outcome", 0) + metrics.get("no_outcome", 0)
    incidents = rows[T.INCIDENT_SUMMARY.name].values()
    counted = [i for i in incidents if i["received_at"] is not None and i["behavioral_health"]]
    with_outcome = [i for i in counted if i["outcome"] is not None]
    total = sum(
        r["value"]
        for r in rows[T.OUTCOME_COUNTS.name].values()
        if r["period_kind"] == "month"
        and r["area_kind"] == "all"
        and r["behavioral_health"]
        and r["metric"].startswith("outcome.")
    )
    assert total == len(with_outcome)


@settings(max_examples=60, deadline=None)
@given(event_lists)
def test_timelines_hold_every_fact_in_time_order_with_visibility(facts):
    rows = derive(facts, CFG)
    entries = rows[T.TIMELINE_ENTRIES.name]
    assert set(k[0] for k in entries) == {f.event_id for f in facts}
    for e in entries.values():
        assert ("dispatcher" in e["visible_to"]) == (e["system"] == "cad")
        assert "analyst" not in e["visible_to"]
    for (person, eid), r in rows[T.PERSON_TIMELINE.name].items():
        assert rows[T.PERSON_CLUSTERS.name][(person,)]["canonical"] == person
        assert r["at"] == entries[(eid,)]["at"]


def call(i=INC, m=0, bh=True, **kw):
    return fact(
        CallReceived(
            incident_id=i,
            agency="sea",
            cad_number=i.split(":")[1],
            at=at(m),
            source_timezone="UTC",
            category="behavioral_health",
            behavioral_health=bh,
            **kw,
        )
    )


def test_disposition_before_dispatch_and_revision_before_receive_give_in_order_rows():
    in_order = [
        call(area=Area(precinct="N")),
        fact(UnitDispatched(incident_id=INC, at=at(2), unit_kind="police")),
        fact(UnitOnScene(incident_id=INC, at=at(9), unit_kind="police")),
        fact(CallDisposition(incident_id=INC, at=at(30), outcome="arrest")),
        fact(
            CallRevised(
                incident_id=INC, at=at(60), revision="2", outcome="no_enforcement", area=Area(precinct="S")
            )
        ),
    ]
    rows = fold_all(in_order)
    assert fold_all(list(reversed(in_order))) == rows
    inc = rows[T.INCIDENT_SUMMARY.name][(INC,)]
    assert inc["outcome"] == "no_enforcement" and inc["precinct"] == "S"
    assert inc["response_seconds"] == 9 * 60


def test_outcome_is_the_more_severe_of_cad_and_scene():
    rows = derive(
        [
            call(),
            fact(CallDisposition(incident_id=INC, at=at(30), outcome="no_enforcement")),
            fact(OnSceneOutcome(incident_id=INC, at=at(20), outcome="voluntary_transport")),
        ],
        CFG,
    )
    assert rows[T.INCIDENT_SUMMARY.name][(INC,)]["outcome"] == "voluntary_transport"


def test_officer_time_returned_when_the_co_responder_takes_over():
    rows = derive(
        [
            call(),
            fact(UnitOnScene(incident_id=INC, at=at(10), unit_kind="police")),
            fact(ClinicianEngaged(incident_id=INC, at=at(12), clinician_id="c", program="p")),
            fact(
                OnSceneOutcome(
                    incident_id=INC, at=at(50), outcome="no_enforcement", officer_released_at=at(20)
                )
            ),
            fact(UnitCleared(incident_id=INC, at=at(25), unit_kind="police", unit_id="p1")),
            fact(UnitCleared(incident_id=INC, at=at(70), unit_kind="co_responder", unit_id="c1")),
        ],
        CFG,
    )
    inc = rows[T.INCIDENT_SUMMARY.name][(INC,)]
    assert inc["co_responder"] is True
    assert inc["officer_time_returned_seconds"] == 50 * 60
    assert inc["time_on_scene_seconds"] == 60 * 60


def test_connected_to_services_within_the_window_through_a_link():
    base = [
        call(),
        fact(PersonIdentified(incident_id=INC, at=at(5), person=P1)),
        fact(ServiceEnrolled(case_id="k", person=P2, at=at(60 * 24 * 10), service_type="bh", provider="x")),
    ]
    link = fact(PersonLinked(person=P1, other=P2, at=at(1), actor="t"))
    unlink = fact(PersonUnlinked(person=P1, other=P2, at=at(2), actor="t"))
    assert derive(base, CFG)[T.INCIDENT_SUMMARY.name][(INC,)]["connected_to_services"] is False
    linked = fold_all([*base, link])
    assert linked[T.INCIDENT_SUMMARY.name][(INC,)]["connected_to_services"] is True
    assert linked[T.PERSON_CLUSTERS.name][(P2,)]["canonical"] == P1
    # the unlink recomputes the incident, the counts and both timelines
    unlinked = fold_all([unlink, *base, link])
    assert unlinked[T.INCIDENT_SUMMARY.name][(INC,)]["connected_to_services"] is False
    assert unlinked[T.PERSON_CLUSTERS.name][(P2,)]["canonical"] == P2
    assert not any(r["metric"] == "connected_to_services" for r in unlinked[T.OUTCOME_COUNTS.name].values())
    late = derive(
        [
            *base,
            fact(
                ServiceEnrolled(case_id="k", person=P1, at=at(60 * 24 * 31), service_type="bh", provider="x")
            ),
        ],
        CFG,
    )
    assert late[T.INCIDENT_SUMMARY.name][(INC,)]["connected_to_services"] is False


def test_referral_funnel_stage_times_and_part2_flags():
    req = ReferralRequested(
        referral_id="r1",
        person=P1,
        at=at(0),
        incident_id=INC,
        destination="d",
        channel="hl7v2",
        service_type="sud",
        substance_use=True,
        requester="t",
    )
    facts = [
        fact(req),
        fact(ReferralDelivered(referral_id="r1", person=P1, at=at(1), destination="d", channel="hl7v2")),
        fact(ReferralAccepted(referral_id="r1", person=P1, at=at(61))),
        fact(ReferralCompleted(referral_id="r1", person=P1, at=at(121))),
    ]
    rows = fold_all(list(reversed(facts)))
    f = rows[T.REFERRAL_FUNNEL.name][("r1",)]
    assert f["status"] == "completed"
    assert (
        f["seconds_requested_to_delivered"],
        f["seconds_delivered_to_accepted"],
        f["seconds_accepted_to_completed"],
    ) == (60, 3600, 3600)
    entries = rows[T.TIMELINE_ENTRIES.name].values()
    assert all(e["part2"] and e["incident_id"] == INC for e in entries)
    assert {e["system"] for e in entries} == {"case", "hub", "ehr"}


def test_repeat_encounters_and_enrolment():
    facts = []
    for n, inc in enumerate(INCIDENTS):
        facts += [
            call(inc, m=n * 60 * 24),
            fact(PersonIdentified(incident_id=inc, at=at(n * 60 * 24), person=P1)),
        ]
    facts.append(fact(PersonIdentified(incident_id=INC, at=at(3), person=P3, role="caller")))
    rows = derive(facts, CFG)
    s = rows[T.PERSON_SUMMARY.name][(P1,)]
    assert (s["contacts"], s["max_contacts_in_window"], s["enrolled_in_services"]) == (3, 3, False)
    assert (P3,) not in rows[T.PERSON_SUMMARY.name]
    timeline = {eid for (p, eid) in rows[T.PERSON_TIMELINE.name] if p == P1}
    assert timeline == {f.event_id for f in facts}  # every fact of their incidents


def test_fold_reports_row_changes():
    state, changes = fold(ProjectionState(), call(), CFG)
    tables = {c.table for c in changes}
    assert {"incident_summary", "timeline_entries", "outcome_counts"} <= tables
    again, none = fold(state, call(), CFG)
    assert none == [] and again is state


def test_part2_consents_granted_or_revoked_are_flagged_part2_general_ones_not() -> None:
    facts = [
        fact(ConsentGranted(consent_id="c2", person=P1, at=at(1), recipients=("p1",), scope=("part2",)),
             record="g"),
        fact(ConsentRevoked(consent_id="c2", person=P1, at=at(2)), record="r"),
        fact(ConsentGranted(consent_id="cg", person=P1, at=at(3), recipients=("p1",), scope=("general",)),
             record="h"),
        fact(ConsentRevoked(consent_id="cg", person=P1, at=at(4)), record="s"),
        fact(ConsentRevoked(consent_id="unknown", person=P1, at=at(5)), record="u"),
    ]
    rows = derive(facts, CFG)[T.TIMELINE_ENTRIES.name].values()
    flags = sorted((r["event_type"], r["detail"]["consent_id"], r["part2"]) for r in rows)
    assert flags == [
        ("consent.granted.v1", "c2", True),
        ("consent.granted.v1", "cg", False),
        ("consent.revoked.v1", "c2", True),
        ("consent.revoked.v1", "cg", False),
        ("consent.revoked.v1", "unknown", True),  # a revocation of an unknown grant: Part 2
    ]
