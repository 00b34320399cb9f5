"""A small, fixed set of facts for the API tests: two incidents of program ``coresp-1`` and
one of ``coresp-2``, a person with a Part 2 (substance-use) referral under consent, a
person whose Part 2 referral has no consent (only a Part 2 consent naming another program),
and a person with a general consent. Built with the real event models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.kernel.identity import pseudonymize
from schemas.base import Area
from schemas.case import CaseOpened, ServiceEnrolled
from schemas.consent import ConsentGranted
from schemas.dispatch import CallDisposition, CallReceived, UnitDispatched
from schemas.encounter import ClinicianEngaged, OnSceneOutcome, PersonIdentified
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def people(key: bytes) -> dict[str, str]:
    return {name: pseudonymize(key, "mpi:test-county", name) for name in ("ann", "ben", "cy")}


def incident(n: int) -> str:
    return f"sea:T{n:05d}"


def scenario(key: bytes) -> list[Envelope]:
    p = people(key)
    out: list[Envelope] = []

    def add(data: object, rid: str) -> None:
        out.append(new_event(data, source="test/api", record_id=rid))  # type: ignore[arg-type]

    plan = [
        (1, "ann", "coresp-1", "no_enforcement"),
        (2, "ben", "coresp-1", "voluntary_transport"),
        (3, "cy", "coresp-2", "arrest"),
    ]
    for n, who, program, outcome in plan:
        at = T0 + timedelta(hours=n)
        iid = incident(n)
        add(
            CallReceived(
                incident_id=iid,
                agency="sea",
                cad_number=f"T{n:05d}",
                at=at,
                source_timezone="America/Los_Angeles",
                category="behavioral_health",
                behavioral_health=True,
                priority="2",
                area=Area(precinct="north", beat="N1"),
            ),
            f"c{n}",
        )
        add(
            UnitDispatched(
                incident_id=iid, unit_id="U1", unit_kind="co_responder", at=at + timedelta(minutes=2)
            ),
            f"d{n}",
        )
        add(
            ClinicianEngaged(
                incident_id=iid, at=at + timedelta(minutes=10), clinician_id="staff-7", program=program
            ),
            f"e{n}",
        )
        add(PersonIdentified(incident_id=iid, at=at + timedelta(minutes=11), person=p[who]), f"p{n}")
        add(
            OnSceneOutcome(incident_id=iid, at=at + timedelta(minutes=40), outcome=outcome, person=p[who]),
            f"o{n}",
        )
        add(CallDisposition(incident_id=iid, at=at + timedelta(minutes=50), outcome=outcome), f"x{n}")
        add(
            CaseOpened(
                case_id=f"case-{who}",
                person=p[who],
                at=at + timedelta(hours=2),
                program=program,
                incident_id=iid,
            ),
            f"k{n}",
        )
    # ann: a Part 2 referral under a consent naming coresp-1; ben: Part 2 referral, no consent
    add(
        ConsentGranted(
            consent_id="cons-ann",
            person=p["ann"],
            at=T0 + timedelta(days=1),
            recipients=("coresp-1",),
            scope=("part2",),
        ),
        "g1",
    )
    # ben: a Part 2 consent naming another program only; cy: a general consent for coresp-2
    add(
        ConsentGranted(
            consent_id="cons-ben",
            person=p["ben"],
            at=T0 + timedelta(days=1),
            recipients=("coresp-9",),
            scope=("part2",),
        ),
        "g2",
    )
    add(
        ConsentGranted(
            consent_id="cons-cy",
            person=p["cy"],
            at=T0 + timedelta(days=1),
            recipients=("coresp-2",),
            scope=("general",),
        ),
        "g3",
    )
    for who in ("ann", "ben"):
        add(
            ReferralRequested(
                referral_id=f"ref-{who}",
                person=p[who],
                at=T0 + timedelta(days=2),
                incident_id=incident(1 if who == "ann" else 2),
                destination="clinic-a",
                channel="fhir",
                service_type="substance_use_treatment",
                substance_use=True,
                requester="staff-7",
            ),
            f"r-{who}",
        )
        add(
            ServiceEnrolled(
                case_id=f"case-{who}",
                person=p[who],
                at=T0 + timedelta(days=3),
                service_type="outpatient_mh",
                provider="clinic-b",
            ),
            f"s-{who}",
        )
    return out
