"""Builders and Hypothesis strategies for valid event sequences (test helpers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from projections.facts import Fact, fact_from_envelope
from schemas.base import Area
from schemas.case import CaseOpened, ContactLogged, ServiceEnrolled
from schemas.consent import ConsentGranted
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitOnScene,
)
from schemas.encounter import ClinicianEngaged, IntakeRecorded, OnSceneOutcome, PersonIdentified
from schemas.envelope import new_event
from schemas.identity import PersonLinked, PersonUnlinked
from schemas.referral import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralDelivered,
    ReferralRequested,
)

T0 = datetime(2024, 3, 30, 18, 0, tzinfo=UTC)
PERSONS = tuple(f"psn_{i:032x}" for i in (1, 2, 3, 4))
INCIDENTS = ("sea:1001", "sea:1002", "sea:1003")
REFERRALS = ("ref-a", "ref-b")
OUTCOMES = ("no_enforcement", "voluntary_transport", "arrest", "involuntary_hold", "referral", "unknown")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


_counter = iter(range(10**9))


def fact(data, source: str = "test", record: str | None = None) -> Fact:
    """A fact with a deterministic id over (source, record, payload)."""
    rid = record or data.model_dump_json()
    return fact_from_envelope(new_event(data, source=source, record_id=rid, recorded_at=T0))


minutes = st.integers(min_value=0, max_value=60 * 24 * 50)
incident = st.sampled_from(INCIDENTS)
person = st.sampled_from(PERSONS)
referral = st.sampled_from(REFERRALS)
area = st.builds(Area, precinct=st.sampled_from(["N", "S", None]), beat=st.sampled_from(["B1", "B2", None]))
#: county-defined values as a CAD row (received or revised), a case record or an intake form
#: carries them: few names, so later sources overwrite earlier ones for the same field
custom = st.dictionaries(
    st.sampled_from(["crisis_line", "units_sent", "zone"]),
    st.one_of(st.booleans(), st.integers(0, 3), st.sampled_from(["north", "south"])),
    max_size=2,
)

call_received = st.builds(
    lambda i, m, cat, bh, a, c: CallReceived(
        incident_id=i,
        agency="sea",
        cad_number=i.split(":")[1],
        at=at(m),
        source_timezone="UTC",
        call_type_final=cat if bh else None,
        call_type_initial=None if bh else cat,
        area=a,
        custom=c,
    ),
    incident,
    st.integers(0, 60 * 24 * 40),
    st.sampled_from(["CRISIS", "WELL BEING", "TRAFFIC"]),
    st.booleans(),
    area,
    custom,
)
unit_event = st.builds(
    lambda cls, i, m, kind: cls(incident_id=i, at=at(m), unit_id=f"u-{kind}", unit_kind=kind),
    st.sampled_from([UnitDispatched, UnitEnRoute, UnitOnScene, UnitCleared]),
    incident,
    minutes,
    st.sampled_from(["police", "co_responder"]),
)
disposition = st.builds(
    lambda i, m, o: CallDisposition(incident_id=i, at=at(m), disposition_code=o),
    incident,
    minutes,
    st.sampled_from(OUTCOMES),
)
revision = st.builds(
    lambda i, m, n, o, bh, c: CallRevised(
        incident_id=i, at=at(m), revision=str(n), disposition_code=o, call_type_final=bh, custom=c
    ),
    incident,
    minutes,
    st.integers(1, 3),
    st.sampled_from((None, *OUTCOMES)),
    st.sampled_from([None, "CRISIS"]),  # a revision that makes the call a BH call
    custom,  # a re-export that corrects (or adds) county fields
)
engaged = st.builds(
    lambda i, m: ClinicianEngaged(incident_id=i, at=at(m), clinician_id="c1", program="p"), incident, minutes
)
identified = st.builds(
    lambda i, m, p, r: PersonIdentified(incident_id=i, at=at(m), person=p, role=r),
    incident,
    minutes,
    person,
    st.sampled_from(["subject", "subject", "caller"]),
)
onscene = st.builds(
    lambda i, m, o, p, rel: OnSceneOutcome(
        incident_id=i, at=at(m), outcome=o, person=p, officer_released_at=at(m - 5) if rel else None
    ),
    incident,
    minutes,
    st.sampled_from(OUTCOMES),
    st.sampled_from((None, *PERSONS)),
    st.booleans(),
)
intake_form = st.builds(
    lambda i, m, sub, rev, o, force, p, c: IntakeRecorded(
        incident_id=i, at=at(m), submission_id=sub, revision=rev, program="p", clinician_id="c1",
        mode="co_response", outcome=o, use_of_force=force, person=p, custom=c,
    ),
    incident,
    minutes,
    st.sampled_from(["0b7cf0d4-5d2c-4f55-9b53-0c3f0a8f2a11", "5e2d7c8a-1f3b-4c6d-8e9f-a0b1c2d3e4f5"]),
    st.integers(0, 2),
    st.sampled_from(OUTCOMES),
    st.sampled_from((None, "none", "restraints")),
    st.sampled_from((None, *PERSONS)),
    custom,
)
requested = st.builds(
    lambda r, p, m, i, su: ReferralRequested(
        referral_id=r,
        person=p,
        at=at(m),
        incident_id=i,
        destination="clinic",
        channel="fhir",
        service_type="bh",
        substance_use=su,
        requester="t",
    ),
    referral,
    person,
    minutes,
    st.sampled_from((None, *INCIDENTS)),
    st.booleans(),
)
referral_step = st.builds(
    lambda cls, r, p, m: cls(
        referral_id=r,
        person=p,
        at=at(m),
        **({"destination": "clinic", "channel": "fhir"} if cls is ReferralDelivered else {}),
    ),
    st.sampled_from([ReferralDelivered, ReferralAccepted, ReferralCompleted, ReferralDeclined]),
    referral,
    person,
    minutes,
)
enrolled = st.builds(
    lambda p, m: ServiceEnrolled(case_id="k1", person=p, at=at(m), service_type="bh", provider="clinic"),
    person,
    minutes,
)
opened = st.builds(
    lambda p, m, i, c: CaseOpened(case_id="k1", person=p, at=at(m), program="p", incident_id=i, custom=c),
    person,
    minutes,
    st.sampled_from((None, *INCIDENTS)),
    custom,
)
contact = st.builds(
    lambda p, m, i, c: ContactLogged(case_id="k1", person=p, at=at(m), incident_id=i, custom=c),
    person,
    minutes,
    st.sampled_from((None, *INCIDENTS)),
    custom,
)
link = st.builds(
    lambda cls, a, b, m: cls(person=a, other=b, at=at(m), actor="t"),
    st.sampled_from([PersonLinked, PersonLinked, PersonUnlinked]),
    person,
    person,
    minutes,
)
consent = st.builds(
    lambda p, m: ConsentGranted(
        consent_id="c1", person=p, at=at(m), recipients=("clinic",), scope=("part2",)
    ),
    person,
    minutes,
)

any_event = st.one_of(
    call_received,
    unit_event,
    disposition,
    revision,
    engaged,
    identified,
    onscene,
    intake_form,
    requested,
    referral_step,
    enrolled,
    opened,
    contact,
    link,
    consent,
)
event_lists = st.lists(any_event.map(fact), min_size=1, max_size=25, unique_by=lambda f: f.event_id)
