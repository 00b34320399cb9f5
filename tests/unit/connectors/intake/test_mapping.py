"""An encounter form → its facts (pure): the facts a county's projections and delivery
workers need, deterministic ids (a retry appends nothing), consent before referral, no
clear identifier outside sealed payloads, amendments that add a revision and never
repeat what the submission appended."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.intake.form import FormInvalid, parse_amendment, parse_form
from connectors.intake.mapping import Earlier, IntakeFacts, Submitter, intake_facts, person_pseudonym
from connectors.referrals.content import ReferralReason
from hub.kernel.crypto import MemoryKeyring, unseal
from hub.kernel.settings import IntakeDestination
from schemas.referral import ReferralRequested

KEY = b"k" * 32
NAME, MRN = "Jane Quimby", "MPI-884213"
NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
DESTS = {"clinic-b": IntakeDestination(display="Clinic B", channel="hl7v2")}
WHO = Submitter(program="coresp-1", clinician_id="clin-7")
SID = "0b7cf0d4-5d2c-4f55-9b53-0c3f0a8f2a11"


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "submission_id": SID,
        "incident_id": "COUNTY:240001",
        "encounter_at": (NOW - timedelta(hours=2)).isoformat(),
        "mode": "phone",
        "outcome": "referral",
        "use_of_force": "none",
        "services_offered": ["substance_use_treatment"],
        "person": {"system": "mpi:county", "identifier": MRN, "given_name": "Jane", "gender": "female"},
        "referral": {
            "destination": "clinic-b",
            "service_type": "substance_use_treatment",
            "reason": NAME,
            "substance_use": True,
        },
        "consent": {"part2": True, "recipients": ["clinic-b"]},
        "note": f"{NAME} is safe",
    }
    b.update(changes)
    return b


def facts(raw: dict[str, Any], keys: MemoryKeyring | None = None, **kw: Any) -> IntakeFacts:
    form = parse_form(raw)
    args: dict[str, Any] = {
        "record_id": SID,
        "submission_id": SID,
        "incident_id": form.incident_id,
        "revision": 0,
        "submitter": WHO,
        "earlier": Earlier(),
        "pseudonym_key": KEY,
        "keys": keys or MemoryKeyring(),
        "destinations": DESTS,
        "now": NOW,
    }
    args.update(kw)
    return intake_facts(form, **args)


def test_a_submission_gives_the_facts_in_two_batches() -> None:
    out = facts(body())
    assert [e.type for e in out.first] == [
        "encounter.clinician.engaged.v1",
        "encounter.person.identified.v1",
        "consent.granted.v1",
    ]
    assert [e.type for e in out.then] == ["encounter.intake.recorded.v2", "referral.requested.v1"]
    record = out.then[0].payload()
    assert record.model_dump(
        include={"program", "clinician_id", "mode", "outcome", "use_of_force", "revision"}
    ) == {
        "program": "coresp-1",
        "clinician_id": "clin-7",
        "mode": "phone",
        "outcome": "referral",
        "use_of_force": "none",
        "revision": 0,
    }
    assert out.person == person_pseudonym(KEY, parse_form(body()))
    assert {e.source for e in out.envelopes} == {"intake/coresp-1"}


def test_ids_are_deterministic_and_identifiers_stay_sealed() -> None:
    keys = MemoryKeyring()
    a, b = facts(body(), keys), facts(body())
    assert [e.id for e in a.envelopes] == [e.id for e in b.envelopes]
    for env in a.envelopes:
        text = env.model_dump_json()
        assert MRN not in text and "Jane" not in text and "Quimby" not in text
    request = a.then[1].payload()
    assert isinstance(request, ReferralRequested) and request.substance_use and request.channel == "hl7v2"
    assert request.reason is not None
    reason = ReferralReason.model_validate(unseal(keys, request.reason))
    assert (reason.text, reason.gender) == (NAME, "female")
    assert unseal(keys, a.envelopes[1].payload().demographics)["identifier"] == MRN  # type: ignore[attr-defined]


def test_a_form_without_a_person_seals_its_note_under_the_incident() -> None:
    out = facts(body(person=None, referral=None, consent=None))
    assert [e.type for e in out.envelopes] == [
        "encounter.clinician.engaged.v1",
        "encounter.intake.recorded.v2",
    ]
    assert out.person is None and out.then[0].payload().note is not None  # type: ignore[attr-defined]


def test_an_amendment_adds_a_revision_and_repeats_nothing() -> None:
    first = facts(body())
    earlier = Earlier(first.person, first.referral_id, first.consent_id, first.consent_digest)
    raw = {
        k: v
        for k, v in body(outcome="emergency_department").items()
        if k not in ("submission_id", "incident_id")
    }
    amendment = parse_amendment({**raw, "amendment_id": str(uuid.uuid4()), "reason": "wrong outcome"})
    out = intake_facts(
        amendment,
        record_id=str(amendment.amendment_id),
        submission_id=SID,
        incident_id="COUNTY:240001",
        revision=1,
        submitter=WHO,
        earlier=earlier,
        pseudonym_key=KEY,
        keys=MemoryKeyring(),
        destinations=DESTS,
        now=NOW,
        reason=amendment.reason,
    )
    assert [e.type for e in out.envelopes] == ["encounter.intake.recorded.v2"]
    record = out.then[0].payload()
    assert (record.revision, record.outcome, record.referral_ids) == (
        1,
        "emergency_department",
        (first.referral_id,),
    )  # type: ignore[attr-defined]
    moved = parse_amendment(
        {
            **raw,
            "amendment_id": str(uuid.uuid4()),
            "reason": "r",
            "person": {"system": "mpi:county", "identifier": "OTHER"},
        }
    )
    with pytest.raises(FormInvalid) as exc:
        intake_facts(
            moved,
            record_id=str(moved.amendment_id),
            submission_id=SID,
            incident_id="COUNTY:240001",
            revision=2,
            submitter=WHO,
            earlier=earlier,
            pseudonym_key=KEY,
            keys=MemoryKeyring(),
            destinations=DESTS,
            now=NOW,
        )
    assert exc.value.errors[0].field == "person"


def test_county_fields_travel_in_the_form_and_sensitive_ones_only_sealed() -> None:
    keys = MemoryKeyring()
    out = facts(body(custom={"housing": "unsheltered", "visits": 2, "safety_plan": True}), keys,
                sensitive=frozenset({"safety_plan"}))
    assert out.record is not None
    assert out.record.custom == {"housing": "unsheltered", "visits": 2}
    recorded = next(e for e in out.then if e.type == "encounter.intake.recorded.v2")
    assert "safety_plan" not in recorded.model_dump_json()
    assert out.record.note is not None
    assert unseal(keys, out.record.note)["custom"] == {"safety_plan": True}
    # nothing sensitive, no note: nothing sealed
    plain = facts(body(custom={"housing": "housed"}, note=None, referral=None, consent=None))
    assert plain.record is not None and plain.record.note is None
    assert plain.record.custom == {"housing": "housed"}

