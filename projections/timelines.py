"""Timeline entries (pure): one line per fact, with its source system, a short PHI-free
summary, and who may see it.

Visibility (``visible_to``): dispatchers see CAD facts only; clinicians and case managers
see CAD and clinical facts; analysts see no timeline at all (aggregates only). ``part2``
marks 42 CFR Part 2 (substance-use) facts — a substance-use referral and every fact of
it, a substance-use service enrolment, a Part 2 consent (its existence discloses treatment)
— which the read API shows only under a consent (a consent only to its recipients).
Sealed fields stay sealed in ``detail``; summaries never contain clinical content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projections.facts import Fact
from schemas.case import CaseClosed, CaseOpened, ContactLogged, ServiceEnrolled
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.dispatch import CallDisposition, CallReceived, CallRevised, UnitEvent
from schemas.encounter import ClinicianEngaged, IntakeRecorded, OnSceneOutcome, PersonIdentified
from schemas.referral import ReferralRejected, ReferralRequested

CAD_ROLES = ("dispatcher", "clinician", "case_manager")
CLINICAL_ROLES = ("clinician", "case_manager")


def visible_to(fact: Fact) -> list[str]:
    """The roles that may see this fact on a timeline."""
    return list(CAD_ROLES if fact.system == "cad" else CLINICAL_ROLES)


def is_part2(
    fact: Fact, part2_referrals: Mapping[str, bool], part2_consents: Mapping[str, bool] | None = None
) -> bool:
    """Substance-use facts: a substance-use referral and every fact of it, a substance-use
    service enrolment, and a Part 2 consent — granted, or revoked (``part2_consents``:
    consent id → whether its grant is Part 2; the revocation of an unknown grant counts as
    Part 2)."""
    p = fact.payload
    if isinstance(p, ReferralRequested | ServiceEnrolled):
        return p.substance_use
    if isinstance(p, ConsentGranted):
        return "part2" in p.scope
    if isinstance(p, ConsentRevoked):
        return (part2_consents or {}).get(p.consent_id, True)
    return bool(fact.referral_id and part2_referrals.get(fact.referral_id, False))


def summary(fact: Fact) -> str:
    """A one-line description from non-PHI fields only."""
    p = fact.payload
    label = fact.event_type.rsplit(".v", 1)[0].split(".", 1)[1].replace(".", " ").replace("_", " ")
    parts: list[str] = []
    if isinstance(p, CallReceived):
        call_type = p.call_type_final or p.call_type_initial or ""
        parts = [call_type, f"priority {p.priority}" if p.priority else ""]
    elif isinstance(p, CallRevised):
        parts = [f"revision {p.revision}", p.disposition_code or p.disposition_text or ""]
    elif isinstance(p, CallDisposition):
        parts = [p.disposition_code or p.disposition_text or ""]
    elif isinstance(p, OnSceneOutcome):
        parts = [p.outcome]
    elif isinstance(p, UnitEvent):
        parts = [p.unit_kind, p.unit_id or ""]
    elif isinstance(p, IntakeRecorded):
        parts = [f"amendment {p.revision}" if p.revision else "submitted", p.mode, p.outcome,
                 f"use of force: {p.use_of_force}" if p.use_of_force else ""]
    elif isinstance(p, ClinicianEngaged):
        parts = [p.program, p.mode]
    elif isinstance(p, PersonIdentified):
        parts = [p.role]
    elif isinstance(p, ReferralRequested):
        parts = [p.service_type, f"to {p.destination}", p.priority]
    elif isinstance(p, ReferralRejected):
        parts = [p.code]
    elif isinstance(p, CaseOpened):
        parts = [p.program]
    elif isinstance(p, ContactLogged):
        parts = [p.contact_kind]
    elif isinstance(p, ServiceEnrolled):
        parts = [p.service_type, f"at {p.provider}"]
    elif isinstance(p, CaseClosed):
        parts = [p.reason]
    elif isinstance(p, ConsentGranted):
        parts = ["/".join(p.scope), p.purpose]
    elif hasattr(p, "destination"):
        parts = [f"to {p.destination}"]
    extra = ", ".join(x for x in parts if x)
    return f"{label}: {extra}" if extra else label


def timeline_entry(fact: Fact, part2_referrals: Mapping[str, bool],
                   referral_incident: Mapping[str, str],
                   part2_consents: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """The ``timeline_entries`` row of one fact. A referral fact without its own incident
    id is placed on the incident its referral was requested for."""
    incident = fact.incident_id or (referral_incident.get(fact.referral_id) if fact.referral_id else None)
    return {
        "event_id": fact.event_id,
        "at": fact.at,
        "system": fact.system,
        "source": fact.source,
        "event_type": fact.event_type,
        "incident_id": incident,
        "person": fact.person,
        "referral_id": fact.referral_id,
        "summary": summary(fact),
        "detail": fact.data,
        "visible_to": visible_to(fact),
        "part2": is_part2(fact, part2_referrals, part2_consents),
    }
