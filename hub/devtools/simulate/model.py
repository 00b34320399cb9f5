"""The county model: pure, deterministic for a given seed (no clock, no I/O).

- calls: ``calls_per_day`` on average with a daily cycle (quiet before dawn, busiest in
  the late afternoon); ``bh_share`` (default 7 %) behavioral-health calls;
- dispositions in realistic proportions; for behavioral-health calls close to Albuquerque
  COAST's published split (about 40 % no action, 33 % voluntary mental-health transport,
  3 % enforcement, the rest emergency department, involuntary hold, referral, unable to
  locate);
- repeat persons: a pool of *frequent utilizers* (about ``frequent_pool`` people per
  daily behavioral-health call, each with their own rate) is the subject of
  ``frequent_share`` of behavioral-health calls — in a month most of them have three or
  more contacts; the other calls are about someone new or, less often, someone seen
  before;
- engagement: each person either accepts services or not (``engage_frequent`` /
  ``engage_other``, Colorado's evaluation found 68.8 % of people with 3+ contacts
  enrolled). Only people who engage are referred, and a case opened for them enrolls
  them in a service, so "enrolled in services" of the people with 3+ contacts follows the
  model whatever the EHR later answers;
- revisions: ``revision_share`` of calls are republished later with a changed final call
  type or disposition;
- malformed rows: ``malformed_share`` (about 1 %) are damaged when written out;
- co-responder encounters (clinician engaged, person identified, on-scene outcome, use
  of force by police — more often on arrests and holds), referral intents and
  case-system records for the behavioral-health calls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from schemas.base import Outcome
from schemas.encounter import EncounterMode, UseOfForce
from schemas.referral import Channel, Priority

T = TypeVar("T")

# (call type text, category, priority) — text close to what CAD systems publish
BH_TYPES = [
    ("PERSON IN BEHAVIORAL/EMOTIONAL CRISIS", "1"),
    ("SUICIDE - SUICIDAL PERSON AND ATTEMPTS", "1"),
    ("MENTAL HEALTH - PERSON IN CRISIS", "2"),
    ("SERVICE - WELFARE CHECK", "3"),
    ("OVERDOSE", "1"),
    ("CRISIS COMPLAINT - GENERAL", "2"),
]
OTHER_TYPES = [
    ("SUSPICIOUS PERSON, VEHICLE, OR INCIDENT", "3", 16),
    ("ALARM - RESIDENTIAL - BURGLARY", "3", 10),
    ("TRAFFIC - MV COLLISION INVESTIGATION", "2", 9),
    ("THEFT (DOES NOT INCLUDE SHOPLIFT)", "3", 9),
    ("DISTURBANCE - NOISE", "4", 8),
    ("PARKING VIOLATION", "5", 8),
    ("ASSAULT - WITH WEAPON", "1", 5),
    ("BURGLARY - RESIDENTIAL", "2", 6),
    ("DV - ARGUMENTS, DISTURBANCE", "2", 5),
    ("TRESPASS", "4", 5),
    ("MEDICAL - ASSIST FIRE/EMS", "2", 5),
    ("PROPERTY - DAMAGE", "3", 5),
    ("TRAFFIC STOP - OFFICER INITIATED ONVIEW", "7", 5),
]
# hourly weights of the daily cycle (local time)
HOURLY = [
    3,
    2.5,
    2,
    1.5,
    1.2,
    1.3,
    2,
    3,
    4,
    4.5,
    5,
    5.2,
    5.4,
    5.5,
    5.7,
    6,
    6.3,
    6.5,
    6.3,
    6,
    5.5,
    5,
    4.5,
    3.8,
]
# drawn per call; the incident's outcome is the more severe of the CAD's (possibly revised)
# and the team's, which lifts voluntary transport a little above its weight
BH_OUTCOMES: list[tuple[Outcome, int]] = [
    ("no_enforcement", 38),
    ("referral", 4),
    ("voluntary_transport", 30),
    ("emergency_department", 10),
    ("involuntary_hold", 8),
    ("unable_to_locate", 5),
    ("arrest", 2),
    ("citation", 1),
]
OTHER_OUTCOMES: list[tuple[Outcome, int]] = [
    ("no_enforcement", 58),
    ("unable_to_locate", 12),
    ("cancelled", 8),
    ("arrest", 9),
    ("citation", 8),
    ("referral", 2),
    ("emergency_department", 3),
]
DISTRICTS = {
    "NORTH": ["N1", "N2", "N3"],
    "SOUTH": ["S1", "S2", "S3"],
    "EAST": ["E1", "E2"],
    "WEST": ["W1", "W2"],
}
PROGRAM = "county-coresponder"
DESTINATIONS: list[tuple[str, Channel]] = [("county-mh-clinic", "fhir"), ("riverside-bh", "hl7v2")]
SERVICES = ["outpatient_mh", "crisis_stabilization", "case_management", "substance_use_treatment"]


@dataclass(frozen=True)
class SimPerson:
    person_id: str  # identifier in the county master person index (never leaves the model clear)
    namespace: str = "mpi:county"


@dataclass
class SimCall:
    cad_number: str
    received_at: datetime
    dispatched_at: datetime | None
    enroute_at: datetime | None
    onscene_at: datetime | None
    closed_at: datetime | None
    call_type_initial: str
    call_type_final: str
    priority: str
    outcome: Outcome
    behavioral_health: bool
    district: str
    beat: str
    longitude: float
    latitude: float
    self_initiated: bool = False
    person: SimPerson | None = None
    updated_at: datetime | None = None  # first publication
    revisions: list[tuple[datetime, dict[str, str]]] = field(default_factory=list)
    malformed: str | None = None  # "bad_time" / "short_row" when written out damaged

    def latest(self) -> SimCall:
        """The call as last republished (revisions applied)."""
        if not self.revisions:
            return self
        data = dict(self.__dict__)
        for when, changes in self.revisions:
            data.update(changes)
            data["updated_at"] = when
        data["revisions"] = []
        return SimCall(**data)

    def versions(self) -> list[SimCall]:
        """Every published version, oldest first."""
        out = [self]
        data = dict(self.__dict__)
        data["revisions"] = []
        for when, changes in self.revisions:
            data.update(changes)
            data["updated_at"] = when
            out.append(SimCall(**data))
        return out


@dataclass(frozen=True)
class SimEncounter:
    cad_number: str
    at: datetime
    clinician_id: str
    person: SimPerson
    outcome: Outcome
    officer_released_at: datetime | None
    mode: EncounterMode = "co_response"

    @property
    def use_of_force(self) -> UseOfForce:
        return encounter_force(self.cad_number, self.outcome)


#: force used by police per on-scene outcome (weights); other outcomes: :data:`FORCE_OTHERWISE`
FORCE_BY_OUTCOME: dict[str, list[tuple[UseOfForce, int]]] = {
    "arrest": [("none", 50), ("physical_control", 30), ("restraints", 12), ("conducted_energy_device", 8)],
    "citation": [("none", 85), ("physical_control", 15)],
    "involuntary_hold": [("none", 60), ("physical_control", 25), ("restraints", 15)],
    "emergency_department": [("none", 85), ("physical_control", 10), ("restraints", 5)],
}
FORCE_OTHERWISE: list[tuple[UseOfForce, int]] = [("none", 97), ("physical_control", 3)]


def encounter_force(cad_number: str, outcome: str) -> UseOfForce:
    """The use of force of one encounter: deterministic per call, drawn from its own random
    stream (so adding it left every other draw of the model, hence the county, unchanged)."""
    rng = random.Random(f"use-of-force:{cad_number}")
    return _pick(rng, FORCE_BY_OUTCOME.get(outcome, FORCE_OTHERWISE))


@dataclass(frozen=True)
class SimReferral:
    referral_id: str
    cad_number: str
    person: SimPerson
    at: datetime
    destination: str
    channel: Channel
    service_type: str
    substance_use: bool
    priority: Priority = "routine"


@dataclass
class County:
    start: date
    days: int
    timezone: str
    agency: str
    calls: list[SimCall]
    persons: list[SimPerson]
    encounters: list[SimEncounter]
    referrals: list[SimReferral]
    case_records: list[dict[str, object]]
    engaged: frozenset[str] = frozenset()  # person ids of the people who accept services
    frequent: frozenset[str] = frozenset()  # person ids of the frequent utilizers

    def incident_id(self, cad_number: str) -> str:
        return f"{self.agency}:{cad_number}"

    @property
    def bh_calls(self) -> list[SimCall]:
        return [c for c in self.calls if c.behavioral_health]


def _pick(rng: random.Random, weighted: list[tuple[T, int]]) -> T:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


class CountyModel:
    """``CountyModel(seed, days, start).generate()`` → a :class:`County`."""

    def __init__(
        self,
        seed: int = 7,
        days: int = 7,
        start: date | None = None,
        *,
        calls_per_day: int = 400,
        bh_share: float = 0.07,
        revision_share: float = 0.08,
        malformed_share: float = 0.01,
        agency: str = "COUNTY",
        timezone: str = "America/Los_Angeles",
        coresponder_share: float = 0.75,
        frequent_pool: float = 2.1,
        frequent_share: float = 0.4,
        seen_before_share: float = 0.1,
        engage_frequent: float = 0.69,
        engage_other: float = 0.5,
        referral_share: float = 0.8,
    ) -> None:
        self.seed, self.days, self.start = seed, days, start or date(2024, 3, 1)
        self.calls_per_day, self.bh_share = calls_per_day, bh_share
        self.revision_share, self.malformed_share = revision_share, malformed_share
        self.agency, self.timezone, self.coresponder_share = agency, timezone, coresponder_share
        self.frequent_pool, self.frequent_share = frequent_pool, frequent_share
        self.seen_before_share = seen_before_share
        self.engage_frequent, self.engage_other = engage_frequent, engage_other
        self.referral_share = referral_share

    def generate(self) -> County:
        rng = random.Random(self.seed)
        zone = ZoneInfo(self.timezone)
        calls: list[SimCall] = []
        people = _People(self, rng)
        for day in range(self.days):
            d = self.start + timedelta(days=day)
            n = max(1, int(rng.gauss(self.calls_per_day, self.calls_per_day * 0.08)))
            hours = rng.choices(range(24), weights=HOURLY, k=n)
            stamps = sorted(
                datetime.combine(d, time(h, rng.randrange(60), rng.randrange(60)), tzinfo=zone).astimezone(
                    UTC
                )
                for h in hours
            )
            for seq, received in enumerate(stamps, start=1):
                cad = f"{d:%y}{d.timetuple().tm_yday:03d}{seq:04d}"
                calls.append(self._call(rng, cad, received, people))
        encounters, referrals, cases = self._followups(rng, calls, people.engaged)
        return County(
            self.start,
            self.days,
            self.timezone,
            self.agency,
            calls,
            people.persons,
            encounters,
            referrals,
            cases,
            frozenset(people.engaged),
            frozenset(p.person_id for p in people.pool),
        )

    def _call(self, rng: random.Random, cad: str, received: datetime, people: _People) -> SimCall:
        bh = rng.random() < self.bh_share
        if bh:
            initial, priority = rng.choice(BH_TYPES)
            final = initial if rng.random() < 0.8 else rng.choice(BH_TYPES)[0]
            outcome = _pick(rng, BH_OUTCOMES)
            person = people.subject()
        else:
            initial, priority, _ = rng.choices(OTHER_TYPES, weights=[t[2] for t in OTHER_TYPES])[0]
            final, outcome, person = initial, _pick(rng, OTHER_OUTCOMES), None
        district = rng.choice(sorted(DISTRICTS))
        self_initiated = "ONVIEW" in initial
        dispatched = received + timedelta(seconds=rng.randint(20, 900))
        enroute = dispatched + timedelta(seconds=rng.randint(5, 120))
        onscene: datetime | None = enroute + timedelta(seconds=rng.randint(120, 1500))
        if outcome in ("cancelled",) or rng.random() < 0.12:
            onscene = None  # no arrival recorded
        closed = (onscene or enroute) + timedelta(seconds=rng.randint(300, 7200))
        call = SimCall(
            cad_number=cad,
            received_at=received,
            dispatched_at=dispatched,
            enroute_at=enroute,
            onscene_at=onscene,
            closed_at=closed,
            call_type_initial=initial,
            call_type_final=final,
            priority=priority,
            outcome=outcome,
            behavioral_health=bh,
            district=district,
            beat=rng.choice(DISTRICTS[district]),
            longitude=round(-122.45 + rng.random() * 0.2, 5),
            latitude=round(47.50 + rng.random() * 0.2, 5),
            self_initiated=self_initiated,
            person=person,
            updated_at=closed + timedelta(minutes=rng.randint(5, 60)),
        )
        if rng.random() < self.revision_share:
            assert call.updated_at is not None
            when = call.updated_at + timedelta(hours=rng.randint(1, 30))
            changes: dict[str, str]
            if rng.random() < 0.5:
                changes = {"outcome": _pick(rng, BH_OUTCOMES if bh else OTHER_OUTCOMES)}
            else:
                changes = {"priority": str(max(1, int(priority) - 1))}
            call.revisions.append((when, changes))
        if rng.random() < self.malformed_share:
            call.malformed = rng.choice(["bad_time", "short_row"])
        return call

    def _followups(
        self, rng: random.Random, calls: list[SimCall], engaged: set[str]
    ) -> tuple[list[SimEncounter], list[SimReferral], list[dict[str, object]]]:
        encounters: list[SimEncounter] = []
        referrals: list[SimReferral] = []
        cases: list[dict[str, object]] = []
        open_cases: dict[str, str] = {}
        for call in calls:
            if not call.behavioral_health or call.person is None or call.malformed:
                continue
            person = call.person
            if rng.random() >= self.coresponder_share:
                continue
            at = call.onscene_at or call.dispatched_at or call.received_at
            released = at + timedelta(minutes=rng.randint(5, 25)) if rng.random() < 0.7 else None
            encounters.append(
                SimEncounter(
                    call.cad_number,
                    at,
                    f"clin-{rng.randint(1, 12):02d}",
                    person,
                    call.outcome,
                    released,
                    "co_response" if rng.random() < 0.85 else "clinician_only",
                )
            )
            willing = person.person_id in engaged  # only people who accept services are referred
            referable = call.outcome in ("voluntary_transport", "referral", "no_enforcement")
            if willing and referable and rng.random() < self.referral_share:
                dest, channel = rng.choice(DESTINATIONS)
                service = rng.choice(SERVICES)
                referrals.append(
                    SimReferral(
                        f"ref-{call.cad_number}",
                        call.cad_number,
                        person,
                        at + timedelta(minutes=30),
                        dest,
                        channel,
                        service,
                        service == "substance_use_treatment",
                        "urgent" if rng.random() < 0.3 else "routine",
                    )
                )
            cases.extend(self._case_records(rng, call, person, at, open_cases, willing))
        cases.sort(key=lambda r: str(r["updated_at"]))
        return encounters, referrals, cases

    def _case_records(
        self,
        rng: random.Random,
        call: SimCall,
        person: SimPerson,
        at: datetime,
        open_cases: dict[str, str],
        willing: bool,
    ) -> list[dict[str, object]]:
        """Case-system records after one co-responder contact: a case is opened for
        everyone who accepts services (and for some who do not, as outreach); opening a
        case for a willing person enrolls them in a service; contacts are logged; some
        cases close."""
        out: list[dict[str, object]] = []

        def record(kind: str, when: datetime, **extra: object) -> None:
            rid = f"{kind}-{call.cad_number}-{len(out)}"
            out.append(
                {
                    "record_id": rid,
                    "record_type": kind,
                    "case_id": open_cases[person.person_id],
                    "person": {"system": person.namespace, "id": person.person_id},
                    "occurred_at": when.isoformat(),
                    "updated_at": (when + timedelta(minutes=10)).isoformat(),
                    "version": 1,
                    "cad_incident_number": call.cad_number,
                    **extra,
                }
            )

        opened = False
        if person.person_id not in open_cases:
            if not willing and rng.random() > 0.4:
                return out
            open_cases[person.person_id] = f"case-{call.cad_number}"
            record("case_opened", at + timedelta(hours=2), program=PROGRAM)
            opened = True
        for i in range(rng.randint(1, 3)):
            record(
                "contact_logged",
                at + timedelta(days=i + 1, hours=rng.randint(0, 8)),
                contact_kind=rng.choice(["in_person", "phone", "outreach"]),
                note="follow-up contact",
            )
        if willing and opened:
            service = rng.choice(SERVICES)
            record(
                "service_enrolled",
                at + timedelta(days=rng.randint(1, 7)),
                service_type=service,
                provider=rng.choice(DESTINATIONS)[0],
                substance_use=service == "substance_use_treatment",
            )
        if rng.random() < 0.25:
            record(
                "case_closed",
                at + timedelta(days=20),
                reason=rng.choice(["goals_met", "lost_contact", "moved"]),
            )
            del open_cases[person.person_id]
        return out


class _People:
    """Who a behavioral-health call is about (see the module docstring): the frequent
    utilizers' pool (fixed at the start, each with a rate), people seen before, new
    people; and who of them accepts services."""

    def __init__(self, model: CountyModel, rng: random.Random) -> None:
        self.model, self.rng = model, rng
        self.persons: list[SimPerson] = []
        self.engaged: set[str] = set()
        size = max(1, round(model.frequent_pool * model.calls_per_day * model.bh_share))
        self.pool = [self._new(0.0) for _ in range(size)]
        self.rates = [rng.uniform(0.5, 2.0) for _ in self.pool]
        # this share of the pool engages, spread evenly over the rates (a draw per person
        # would swing the month's 3+ enrolled share by several points from seed to seed)
        f = model.engage_frequent
        by_rate = sorted(range(size), key=self.rates.__getitem__)
        for rank, i in enumerate(by_rate):
            if int((rank + 1) * f) > int(rank * f):
                self.engaged.add(self.pool[i].person_id)
        self.others: list[SimPerson] = []

    def _new(self, engage: float) -> SimPerson:
        p = SimPerson(f"MPI-{self.rng.randrange(10**6, 10**7)}")
        self.persons.append(p)
        if self.rng.random() < engage:
            self.engaged.add(p.person_id)
        return p

    def subject(self) -> SimPerson:
        r = self.rng.random()
        if r < self.model.frequent_share:
            return self.rng.choices(self.pool, weights=self.rates)[0]
        if self.others and r < self.model.frequent_share + self.model.seen_before_share:
            return self.rng.choice(self.others)
        p = self._new(self.model.engage_other)
        self.others.append(p)
        return p
