"""Incident summary (pure): call attributes, outcome, response times and persons of one
incident, derived from the *set* of its facts.

Order independence: attributes are last-writer-wins by a total order that does not depend
on arrival — the ``CallReceived`` values first, then dispositions and revisions by (time,
kind, event id) — and stage times are minima/maxima. A disposition that arrives before
its dispatch, or a revision before the call it revises, gives the same row.

Interventions (``program``, ``mode``, ``team``, ``referral_type``): the program that first
engaged a clinician, the mode of the current form (else of the engagement), the first
co-responder unit, the first service type referred to (alphabetically) — the groupings the
report compares outcomes by.

Outcome: the CAD's latest disposition and the team's latest on-scene outcome are each
mapped to one *primary* outcome; the incident's outcome is the more severe of the two
(:data:`SEVERITY`). Primary outcomes are mutually exclusive, so per incident exactly one
(or none) is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from projections.config import FoldConfig
from projections.facts import Fact, subject_person, with_payload
from schemas.case import ServiceEnrolled
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitEvent,
    UnitOnScene,
)
from schemas.encounter import ClinicianEngaged, IntakeRecorded, OnSceneOutcome
from schemas.referral import ReferralCompleted, ReferralRequested

# Primary outcomes, most severe first. "other": unable to locate, cancelled, unknown.
PRIMARY_OUTCOMES = (
    "arrest_or_citation",
    "involuntary_hold",
    "emergency_department",
    "voluntary_transport",
    "no_enforcement",
    "other",
)
SEVERITY = {name: i for i, name in enumerate(PRIMARY_OUTCOMES)}
PRIMARY_OF = {
    "arrest": "arrest_or_citation",
    "citation": "arrest_or_citation",
    "involuntary_hold": "involuntary_hold",
    "emergency_department": "emergency_department",
    "voluntary_transport": "voluntary_transport",
    "no_enforcement": "no_enforcement",
    "referral": "no_enforcement",
    "unable_to_locate": "other",
    "cancelled": "other",
    "unknown": "other",
}
CO_RESPONDER_UNITS = ("co_responder", "clinician")


def primary_outcome(*outcomes: str | None) -> str | None:
    """The most severe primary outcome among the given hub outcomes (None if none)."""
    mapped = [PRIMARY_OF[o] for o in outcomes if o is not None]
    return min(mapped, key=SEVERITY.__getitem__) if mapped else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def current_intake(facts: Iterable[Fact]) -> list[tuple[Fact, IntakeRecorded]]:
    """The current revision of each intake form among ``facts`` (the highest revision of a
    submission; ties, possible only after a crash mid-amendment, by event id), in the
    facts' order. An amendment replaces its submission's outcome and use of force."""
    best: dict[str, tuple[Fact, IntakeRecorded]] = {}
    for f, p in with_payload(facts, IntakeRecorded):
        held = best.get(p.submission_id)
        if held is None or (p.revision, f.event_id) > (held[1].revision, held[0].event_id):
            best[p.submission_id] = (f, p)
    return sorted(best.values(), key=lambda fp: fp[0].order)


def service_times(facts: Iterable[Fact]) -> list[datetime]:
    """When a person was connected to services: referrals completed, services enrolled."""
    return sorted(f.at for f in facts if isinstance(f.payload, ReferralCompleted | ServiceEnrolled))


def incident_row(
    incident_id: str,
    facts: Iterable[Fact],
    canon: Mapping[str, str],
    services_by_person: Mapping[str, list[datetime]],
    cfg: FoldConfig,
) -> dict[str, Any]:
    """The ``incident_summary`` row. ``canon`` maps pseudonyms to canonical ones;
    ``services_by_person`` gives each canonical person's service times."""
    facts = sorted(facts, key=lambda f: f.order)
    attrs: dict[str, Any] = {
        "agency": None, "received_at": None, "call_category": None, "behavioral_health": None,
        "area": None,
    }
    # attribute writers: CallReceived first, then revisions by (time, event id)
    writers = sorted(
        (f for f in facts if isinstance(f.payload, CallReceived | CallRevised)),
        key=lambda f: (isinstance(f.payload, CallRevised), f.at, f.event_id),
    )
    for f in writers:
        p = f.payload
        if isinstance(p, CallReceived):
            attrs.update(agency=p.agency, received_at=f.at, call_category=p.category,
                         behavioral_health=p.behavioral_health, area=p.area)
        else:
            assert isinstance(p, CallRevised)
            for name, value in (("call_category", p.category), ("behavioral_health", p.behavioral_health),
                                ("area", p.area)):
                if value is not None:
                    attrs[name] = value
    # CAD outcome: latest disposition or revision carrying an outcome
    cad: list[tuple[Fact, CallDisposition | CallRevised]] = [
        *with_payload(facts, CallDisposition),
        *((f, p) for f, p in with_payload(facts, CallRevised) if p.outcome is not None),
    ]
    cad.sort(key=lambda fp: (fp[0].at, isinstance(fp[1], CallRevised), fp[0].event_id))
    cad_outcome = cad[-1][1].outcome if cad else None
    scene = with_payload(facts, OnSceneOutcome)
    forms = current_intake(facts)
    # the team's latest word: on-scene outcome facts and the current revision of each form
    reports = sorted(
        [*((f, p.outcome, p.officer_released_at) for f, p in scene),
         *((f, p.outcome, p.officer_released_at) for f, p in forms)],
        key=lambda r: r[0].order,
    )
    onscene_outcome = reports[-1][1] if reports else None
    use_of_force = forms[-1][1].use_of_force if forms else None
    engagements = with_payload(facts, ClinicianEngaged)
    program = engagements[0][1].program if engagements else (forms[0][1].program if forms else None)
    mode = forms[-1][1].mode if forms else (engagements[-1][1].mode if engagements else None)
    referral_types = sorted({p.service_type for _, p in with_payload(facts, ReferralRequested)})
    outcome = primary_outcome(cad_outcome, onscene_outcome)

    def unit_times(kind: type[UnitEvent], units: tuple[str, ...] | None = None) -> list[datetime]:
        return [f.at for f, p in with_payload(facts, kind) if units is None or p.unit_kind in units]

    dispatched = _min(unit_times(UnitDispatched))
    enroute = _min(unit_times(UnitEnRoute))
    arrived = _min(unit_times(UnitOnScene))
    # the scene ends when the last unit cleared; feeds without unit times close the call
    # with its disposition, whose time is then the end of the scene
    closed = _max(f.at for f in facts if isinstance(f.payload, CallDisposition))
    cleared = _max(unit_times(UnitCleared)) or closed
    engaged = _min(f.at for f in facts if isinstance(f.payload, ClinicianEngaged))
    unit_events = UnitDispatched | UnitEnRoute | UnitOnScene | UnitCleared
    co_units = [f for f in facts
                if isinstance(f.payload, unit_events) and f.payload.unit_kind in CO_RESPONDER_UNITS]
    team = next((unit for u in co_units if (unit := getattr(u.payload, "unit_id", None))), None)
    co_responder = bool(co_units) or engaged is not None
    released = _max(r[2] for r in reports)
    police_cleared = _max(unit_times(UnitCleared, ("police",)))
    co_cleared = _max(unit_times(UnitCleared, CO_RESPONDER_UNITS))
    # officer time returned: police released (explicitly, or by clearing) while the
    # co-responder stayed on scene until it cleared
    handover = released or (police_cleared if co_cleared else None)
    returned = _seconds(handover, co_cleared or cleared) if co_responder and handover else None

    received = attrs["received_at"]
    opened = received or (facts[0].at if facts else None)
    persons = sorted({canon.get(who, who) for f in facts if (who := subject_person(f))})
    referral_made = (
        any(isinstance(f.payload, ReferralRequested) for f in facts)
        or "referral" in (cad_outcome, onscene_outcome)
    )
    connected = False
    if opened is not None:
        end = opened + cfg.connected_window
        connected = any(opened <= t <= end for p in persons for t in services_by_person.get(p, ()))
    area = attrs["area"]
    return {
        "incident_id": incident_id,
        "agency": attrs["agency"],
        "received_at": received,
        "opened_at": opened,
        "call_category": attrs["call_category"],
        "behavioral_health": attrs["behavioral_health"],
        "precinct": area.precinct if area else None,
        "district": area.district if area else None,
        "sector": area.sector if area else None,
        "beat": area.beat if area else None,
        "cad_outcome": cad_outcome,
        "onscene_outcome": onscene_outcome,
        "outcome": outcome,
        "referral_made": referral_made,
        "connected_to_services": connected,
        "first_dispatched_at": dispatched,
        "first_enroute_at": enroute,
        "first_arrived_at": arrived,
        "last_cleared_at": cleared,
        "response_seconds": _seconds(received, arrived),
        "time_on_scene_seconds": _seconds(arrived, cleared),
        "co_responder": co_responder,
        "clinician_engaged_at": engaged,
        "officer_released_at": released,
        "officer_time_returned_seconds": returned,
        "persons": persons,
        "fact_count": len(facts),
        "use_of_force": use_of_force,
        "program": program,
        "mode": mode,
        "team": team,
        "referral_type": referral_types[0] if referral_types else None,
    }
