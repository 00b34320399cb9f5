"""A deterministic co-responder scenario for the projection integration tests: incidents
with dispatch, encounter and outcome facts, referrals through the funnel (some Part 2),
service enrolments, repeat encounters, a link and an unlink — appended in a shuffled
order so that dispositions arrive before dispatches and answers before requests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.base import Area
from schemas.case import ServiceEnrolled
from schemas.dispatch import CallDisposition, CallReceived, UnitCleared, UnitDispatched, UnitOnScene
from schemas.encounter import ClinicianEngaged, OnSceneOutcome, PersonIdentified
from schemas.envelope import Envelope, new_event
from schemas.identity import PersonLinked, PersonUnlinked
from schemas.referral import ReferralAccepted, ReferralCompleted, ReferralDelivered, ReferralRequested

T0 = datetime(2024, 1, 3, 17, 0, tzinfo=UTC)
OUTCOMES = (
    "no_enforcement",
    "voluntary_transport",
    "no_enforcement",
    "arrest",
    "emergency_department",
    "involuntary_hold",
    "referral",
    "no_enforcement",
)


def person(n: int, tag: str) -> str:
    return "psn_" + f"{tag}{n:x}".rjust(32, "0")[-32:]


def scenario(n_incidents: int, *, tag: str = "a", seed: int = 7) -> list[Envelope]:
    """About 9 facts per incident, shuffled."""
    out: list[Envelope] = []

    def add(data, rid: str) -> None:
        out.append(new_event(data, source=f"test/{tag}", record_id=rid))

    n_people = max(2, n_incidents // 3)
    for k in range(n_incidents):
        inc = f"sea:{tag}{k:05d}"
        t = T0 + timedelta(hours=7 * k)
        who = person(k % n_people, tag)
        bh = k % 3 != 2
        add(
            CallReceived(
                incident_id=inc,
                agency="sea",
                cad_number=f"{k}",
                at=t,
                source_timezone="UTC",
                call_type_final="CRISIS" if bh else "WELL BEING",  # BH / welfare by the fallback vocabulary
                area=Area(precinct="NESW"[k % 4], beat=f"B{k % 7}"),
            ),
            f"{inc}/rx",
        )
        add(UnitDispatched(incident_id=inc, at=t + timedelta(minutes=2), unit_id="p1"), f"{inc}/d")
        add(UnitOnScene(incident_id=inc, at=t + timedelta(minutes=9), unit_id="p1"), f"{inc}/o")
        add(PersonIdentified(incident_id=inc, at=t + timedelta(minutes=12), person=who), f"{inc}/id")
        add(
            CallDisposition(
                incident_id=inc, at=t + timedelta(minutes=70), disposition_code=OUTCOMES[k % len(OUTCOMES)]
            ),
            f"{inc}/disp",
        )
        if k % 2 == 0:
            add(
                ClinicianEngaged(
                    incident_id=inc, at=t + timedelta(minutes=15), clinician_id="c7", program="coast"
                ),
                f"{inc}/ce",
            )
            add(
                OnSceneOutcome(
                    incident_id=inc,
                    at=t + timedelta(minutes=60),
                    outcome="no_enforcement",
                    person=who,
                    officer_released_at=t + timedelta(minutes=20),
                ),
                f"{inc}/out",
            )
            add(UnitCleared(incident_id=inc, at=t + timedelta(minutes=22), unit_id="p1"), f"{inc}/clp")
            add(
                UnitCleared(
                    incident_id=inc, at=t + timedelta(minutes=65), unit_id="c1", unit_kind="co_responder"
                ),
                f"{inc}/clc",
            )
        if k % 3 == 0:
            ref = f"ref-{tag}-{k}"
            add(
                ReferralRequested(
                    referral_id=ref,
                    person=who,
                    at=t + timedelta(minutes=50),
                    incident_id=inc,
                    destination="clinic",
                    channel="fhir",
                    service_type="bh",
                    substance_use=k % 6 == 0,
                    requester="c7",
                ),
                f"{ref}/rq",
            )
            add(
                ReferralDelivered(
                    referral_id=ref,
                    person=who,
                    at=t + timedelta(minutes=51),
                    destination="clinic",
                    channel="fhir",
                ),
                f"{ref}/dl",
            )
            add(ReferralAccepted(referral_id=ref, person=who, at=t + timedelta(days=1)), f"{ref}/ac")
            if k % 2 == 0:
                add(ReferralCompleted(referral_id=ref, person=who, at=t + timedelta(days=5)), f"{ref}/cp")
        if k % 5 == 1:
            add(
                ServiceEnrolled(
                    case_id=f"case-{k}",
                    person=who,
                    at=t + timedelta(days=2),
                    service_type="bh",
                    provider="clinic",
                ),
                f"case-{k}/en",
            )
    a, b, c = person(0, tag), person(1, tag), person(2, tag)
    add(PersonLinked(person=a, other=b, at=T0 + timedelta(days=1), actor="mpi"), "link-ab")
    add(PersonLinked(person=b, other=c, at=T0 + timedelta(days=1), actor="mpi"), "link-bc")
    add(PersonUnlinked(person=b, other=c, at=T0 + timedelta(days=2), actor="mpi"), "unlink-bc")
    random.Random(seed).shuffle(out)
    return out
