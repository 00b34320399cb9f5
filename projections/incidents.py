"""Incident summary (pure): call attributes, outcome, response times and persons of one
incident, derived from the *set* of its facts.

Meaning is applied here: the facts carry the source's words (call types, disposition
codes), and the call's vocabulary (:class:`hub.kernel.vocabulary.Vocabulary`: the one its
``CallReceived`` names, else the one claiming its agency, else the fallback) says whether
it is a behavioral-health call, its category and its CAD outcome. The row records which
vocabulary (``name@version``) classified it.

Sealed words: a disposition text the vocabulary in force at ingest did not know is sealed
with the incident's key (``disposition_note``: it may be free text naming people). The
fold opens it with the keyring snapshot its shell resolved beforehand
(:func:`sealed_kids`, ``KeyStore.resolve_ids``), in memory only, to classify it: so a later
vocabulary that names the text reclassifies the call on re-projection. No row stores the
opened text. A text that does not open (the incident was erased with a linked person, or
no keyring was given) is a disposition whose words are unknown: its code decides, else
``unknown`` — the outcome the ingest vocabulary gave it.

Order independence: attributes are last-writer-wins by a total order that does not depend
on arrival — the ``CallReceived`` values first, then revisions by (time, event id); the
CAD disposition is the latest of dispositions and revisions by (time, kind, event id) —
and stage times are minima/maxima. A disposition that arrives before its dispatch, or a
revision before the call it revises, gives the same row.

Revisions correct the past: a revision's received time moves the call to its corrected
period, its row-level times (dispatched, en route, on scene, cleared) replace the row-level
unit facts of the first revision (named units' facts stay), and its disposition replaces the
outcome.

Times: the scene ends when the last unit cleared — a real clear time only (a ``UnitCleared``
or a revision's cleared time); a call without one has no time on scene.

Interventions (``program``, ``mode``, ``team``, ``referral_type``): the program that first
engaged a clinician, the mode of the current form (else of the engagement), the first
co-responder unit, the first service type referred to (alphabetically) — the groupings the
report compares outcomes by.

County-defined fields (``custom``): the values the call's ``CallReceived`` carries (a CAD
profile's columns, in the source's words), then each revision's, in the attribute writers'
order (time, event id) — a revision corrects the CAD's value as it corrects the call types;
a field a revision leaves blank keeps its earlier value, as its null fields do — then the
case system's (case openings and contacts that name the incident, in time order), then each
current intake form's in the forms' order. A later source's value replaces an earlier one's
for the same field, so the team's records (case, intake) win over the CAD's however late a
CAD revision comes: the source order decides, not the time of publication. They
are kept as given; the county's definitions read them by type when a metric is computed
(:mod:`hub.kernel.custom_fields`).

Outcome: the CAD's latest disposition and the team's latest on-scene outcome are each
mapped to one *primary* outcome; the incident's outcome is the more severe of the two
(:data:`SEVERITY`). Primary outcomes are mutually exclusive, so per incident exactly one
(or none) is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from hub.kernel.crypto import KeyDestroyedError, Keyring, unseal
from hub.kernel.vocabulary import Vocabulary
from projections.config import FoldConfig
from projections.facts import Fact, subject_person, with_payload
from schemas.case import CaseOpened, ContactLogged, ServiceEnrolled
from schemas.dispatch import (
    CallDisposition,
    CallReceived,
    CallRevised,
    CrisisTemplate,
    UnitCleared,
    UnitDispatched,
    UnitEnRoute,
    UnitEvent,
    UnitOnScene,
)
from schemas.encounter import ClinicianEngaged, IntakeRecorded, OnSceneOutcome
from schemas.outcome import PRIMARY_OF, PRIMARY_OUTCOMES
from schemas.referral import ReferralCompleted, ReferralRequested

SEVERITY = {name: i for i, name in enumerate(PRIMARY_OUTCOMES)}
CO_RESPONDER_UNITS = ("co_responder", "clinician")
STATUS_OF: dict[type[UnitEvent], str] = {
    UnitDispatched: "dispatched", UnitEnRoute: "enroute", UnitOnScene: "onscene", UnitCleared: "cleared",
}


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


def service_times(facts: Iterable[Fact], bh_only: Vocabulary | None = None) -> list[datetime]:
    """When a person was connected to services: referrals completed, services enrolled.
    With ``bh_only``, only behavioral-health services by that vocabulary's service types
    (a completed referral by the service type its request named)."""
    facts = list(facts)
    if bh_only is None:
        return sorted(f.at for f in facts if isinstance(f.payload, ReferralCompleted | ServiceEnrolled))
    requested = {p.referral_id: p.service_type for _, p in with_payload(facts, ReferralRequested)}
    out = [f.at for f, p in with_payload(facts, ServiceEnrolled) if bh_only.is_bh_service(p.service_type)]
    out += [f.at for f, p in with_payload(facts, ReferralCompleted)
            if bh_only.is_bh_service(requested.get(p.referral_id))]
    return sorted(out)


#: the facts whose sealed words the fold opens (their ``disposition_note``)
SEALED_WORDS_TYPES = frozenset({CallDisposition.event_type, CallRevised.event_type})


def sealed_kids(records: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """The key ids a fold of these facts opens — ``(event type, current-version JSON)`` of
    each, e.g. ``(f.event_type, f.data)`` — for the shell to resolve before it derives."""
    kids: set[str] = set()
    for event_type, data in records:
        note = data.get("disposition_note") if event_type in SEALED_WORDS_TYPES else None
        if isinstance(note, Mapping) and isinstance(note.get("kid"), str):
            kids.add(note["kid"])
    return kids


def disposition_words(
    p: CallDisposition | CallRevised, keyring: Keyring | None
) -> tuple[str | None, str | None]:
    """(code, text) of a disposition as the source wrote them: the text in clear, or opened
    from its seal with ``keyring`` (None when it does not open: erased, or no keyring)."""
    text = p.disposition_text
    if text is None and p.disposition_note is not None and keyring is not None:
        try:
            opened = unseal(keyring, p.disposition_note).get("disposition_text")
        except KeyDestroyedError:
            opened = None
        text = opened if isinstance(opened, str) else None
    return p.disposition_code, text


def disposition_meaning(p: CallDisposition | CallRevised, vocab: Vocabulary,
                        keyring: Keyring | None) -> tuple[str, bool] | None:
    """(outcome, known) of one disposition or revision by ``vocab``, or None when it carries
    no disposition. A disposition whose words cannot be read (a sealed text that does not
    open, or a text dropped at ingest for want of a keyring) is decided by its code, else
    ``unknown``."""
    code, text = disposition_words(p, keyring)
    meaning = vocab.outcome(code, text)
    unreadable = text is None and (p.disposition_note is not None or isinstance(p, CallDisposition))
    if unreadable and (meaning is None or not meaning[1]):
        return "unknown", False
    return meaning


def latest_outcomes(cad: list[tuple[Fact, CallDisposition | CallRevised]], vocab: Vocabulary,
                    keyring: Keyring | None = None) -> list[str]:
    """The outcomes of the latest dispositions (a revision after a disposition of the same
    time), most severe first: one for most sources; a source that lists every disposition of a
    contact (Seattle Crisis Data) gives them all, and the most severe is the CAD outcome.
    Sealed disposition texts are opened with ``keyring`` (:func:`disposition_words`)."""
    keyed = [((f.at, isinstance(p, CallRevised)), p) for f, p in cad]
    if not keyed:
        return []
    last = max(k for k, _ in keyed)
    outcomes = {m[0] for k, p in keyed
                if k == last and (m := disposition_meaning(p, vocab, keyring)) is not None}
    return sorted(outcomes, key=lambda o: (SEVERITY[PRIMARY_OF[o]], o))


def template_force(templates: list[CrisisTemplate]) -> str | None:
    """Use of force as crisis templates report it (Seattle Crisis Data's Y/N indicator): any
    ``Y`` is force of a type the source does not say (``other``), all ``N`` is ``none``."""
    flags = [t.use_of_force for t in templates if t.use_of_force is not None]
    if not flags:
        return None
    return "other" if any(flags) else "none"


def call_vocabulary(incident_id: str, facts: Iterable[Fact], cfg: FoldConfig) -> Vocabulary:
    """The vocabulary of an incident's call: the one its ``CallReceived`` names, else the
    one claiming its agency (the incident id's prefix when no call was received yet)."""
    received = [p for _, p in with_payload(facts, CallReceived)]
    named = next((p.vocabulary for p in received if p.vocabulary), None)
    agency = received[0].agency if received else incident_id.split(":", 1)[0]
    return cfg.vocabularies.for_call(named, agency)


def incident_row(
    incident_id: str,
    facts: Iterable[Fact],
    canon: Mapping[str, str],
    services_by_person: Mapping[str, list[datetime]],
    cfg: FoldConfig,
    keyring: Keyring | None = None,
) -> dict[str, Any]:
    """The ``incident_summary`` row. ``canon`` maps pseudonyms to canonical ones;
    ``services_by_person`` gives each canonical person's service times; ``keyring`` (a
    snapshot without I/O, :func:`sealed_kids` resolved) opens sealed disposition texts."""
    facts = sorted(facts, key=lambda f: f.order)
    vocab = call_vocabulary(incident_id, facts, cfg)
    attrs: dict[str, Any] = {
        "agency": None, "received_at": None, "call_type_initial": None, "call_type_final": None, "area": None,
    }
    row_times: dict[str, datetime] = {}  # row-level times a revision corrected
    custom: dict[str, Any] = {}  # county-defined fields: the CAD's, then the case's, then the forms'
    # attribute writers: CallReceived first, then revisions by (time, event id)
    writers = sorted(
        (f for f in facts if isinstance(f.payload, CallReceived | CallRevised)),
        key=lambda f: (isinstance(f.payload, CallRevised), f.at, f.event_id),
    )
    for f in writers:
        p = f.payload
        if isinstance(p, CallReceived):
            attrs.update(agency=p.agency, received_at=f.at, call_type_initial=p.call_type_initial,
                         call_type_final=p.call_type_final, area=p.area)
            custom.update(p.custom)
        else:
            assert isinstance(p, CallRevised)
            for name, value in (("received_at", p.received_at), ("call_type_initial", p.call_type_initial),
                                ("call_type_final", p.call_type_final), ("area", p.area)):
                if value is not None:
                    attrs[name] = value
            for name, when in (("dispatched", p.dispatched_at), ("enroute", p.enroute_at),
                               ("onscene", p.onscene_at), ("cleared", p.cleared_at)):
                if when is not None:
                    row_times[name] = when
            custom.update(p.custom)
    templates = [p for _, p in with_payload(facts, CrisisTemplate)]
    bh: bool | None = None
    category: str | None = None
    if attrs["agency"] is not None:
        bh = vocab.is_behavioral_health(attrs["call_type_initial"], attrs["call_type_final"], bool(templates))
        category = vocab.category(attrs["call_type_initial"], attrs["call_type_final"], bh)
    # CAD outcome: the latest disposition or revision carrying a disposition, by the vocabulary
    cad: list[tuple[Fact, CallDisposition | CallRevised]] = [
        *with_payload(facts, CallDisposition),
        *((f, p) for f, p in with_payload(facts, CallRevised)
          if p.disposition_code is not None or p.disposition_text is not None
          or p.disposition_note is not None),
    ]
    cad_outcomes = latest_outcomes(cad, vocab, keyring)
    cad_outcome = cad_outcomes[0] if cad_outcomes else None
    scene = with_payload(facts, OnSceneOutcome)
    forms = current_intake(facts)
    # the team's latest word: on-scene outcome facts and the current revision of each form
    reports = sorted(
        [*((f, p.outcome, p.officer_released_at) for f, p in scene),
         *((f, p.outcome, p.officer_released_at) for f, p in forms)],
        key=lambda r: r[0].order,
    )
    onscene_outcome = reports[-1][1] if reports else None
    use_of_force = forms[-1][1].use_of_force if forms else template_force(templates)
    engagements = with_payload(facts, ClinicianEngaged)
    program = engagements[0][1].program if engagements else (forms[0][1].program if forms else None)
    mode = forms[-1][1].mode if forms else (engagements[-1][1].mode if engagements else None)
    referral_types = sorted({p.service_type for _, p in with_payload(facts, ReferralRequested)})
    cases = [*with_payload(facts, CaseOpened), *with_payload(facts, ContactLogged)]
    for _, case in sorted(cases, key=lambda fp: fp[0].order):
        custom.update(case.custom)
    for _, form in forms:
        custom.update(form.custom)
    outcome = primary_outcome(cad_outcome, onscene_outcome)

    def unit_times(kind: type[UnitEvent], units: tuple[str, ...] | None = None) -> list[datetime]:
        """The kind's times; a row-level time (no unit named) a revision corrected is
        replaced by the corrected one."""
        status = STATUS_OF[kind]
        out = [f.at for f, p in with_payload(facts, kind)
               if (units is None or p.unit_kind in units) and not (p.unit_id is None and status in row_times)]
        if status in row_times and (units is None or "police" in units):
            out.append(row_times[status])
        return out

    dispatched = _min(unit_times(UnitDispatched))
    enroute = _min(unit_times(UnitEnRoute))
    arrived = _min(unit_times(UnitOnScene))
    # the scene ends when the last unit cleared: real clear times only (a disposition's
    # time is not one — feeds without clear times have no time on scene)
    cleared = _max(unit_times(UnitCleared))
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
        or "referral" in (*cad_outcomes, onscene_outcome)
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
        "call_category": category,
        "behavioral_health": bh,
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
        "vocabulary": vocab.label,
        "use_of_force": use_of_force,
        "program": program,
        "mode": mode,
        "team": team,
        "referral_type": referral_types[0] if referral_types else None,
        "custom": dict(sorted(custom.items())),
    }
