"""A referral created in the case-management system becomes the same ``referral.requested``
fact the encounter intake makes: the delivery workers send it whichever system the
clinician used. Its reason is sealed (never clear), its destination must be configured."""

from __future__ import annotations

from typing import Any

from connectors.cases.mapping import CaseMapper, CaseMapping
from connectors.core.records import Mapped, RawRecord, Rejection
from connectors.referrals.content import ReferralReason
from hub.kernel.crypto import MemoryKeyring, unseal
from hub.kernel.custom_fields import parse_definitions
from hub.kernel.identity import pseudonymize
from schemas.base import Sealed
from schemas.referral import ReferralRequested

KEY = b"k" * 32
REASON = "Jane Quimby needs detox follow-up"


def record(**changes: Any) -> RawRecord:
    rec: dict[str, Any] = {
        "record_id": "r-77",
        "record_type": "referral_created",
        "case_id": "case-9",
        "person": {"system": "mpi:county", "id": "MPI-1234567"},
        "occurred_at": "2026-03-02T10:15:00-08:00",
        "version": 2,
        "referral_id": "CM-4411",
        "destination": "riverside-bh",
        "service_type": "substance_use_treatment",
        "priority": "urgent",
        "substance_use": True,
        "reason": REASON,
        "program": "county-coresponder",
        "cad_incident_number": "240770275",
    }
    rec.update(changes)
    return RawRecord(ref="r-77", raw=b"", fields=rec)


def mapper(keys: MemoryKeyring | None = None) -> CaseMapper:
    return CaseMapping(
        source="cases/acme", agency="COUNTY", referral_destinations={"riverside-bh": "hl7v2"}
    ).mapper(KEY, keys)


def test_a_case_system_referral_is_a_referral_request() -> None:
    keys = MemoryKeyring()
    m = mapper(keys)
    assert m.persons_to_seal(record()) == [pseudonymize(KEY, "mpi:county", "MPI-1234567")]
    result = m.map(record())
    assert isinstance(result, Mapped)
    (env,) = result.events
    req = env.payload()
    assert isinstance(req, ReferralRequested)
    assert req.model_dump(exclude={"reason", "at"}) == {
        "referral_id": "case-CM-4411",
        "person": pseudonymize(KEY, "mpi:county", "MPI-1234567"),
        "incident_id": "COUNTY:240770275",
        "destination": "riverside-bh",
        "channel": "hl7v2",
        "service_type": "substance_use_treatment",
        "priority": "urgent",
        "substance_use": True,
        "requester": "county-coresponder",
    }
    assert REASON not in env.model_dump_json() and "MPI-1234567" not in env.model_dump_json()
    assert req.reason is not None
    assert ReferralReason.model_validate(unseal(keys, req.reason)).text == REASON
    assert mapper(MemoryKeyring()).map(record()).events[0].id == env.id  # type: ignore[union-attr]


def test_without_keys_the_reason_is_dropped_never_kept_clear() -> None:
    result = mapper(None).map(record())
    assert isinstance(result, Mapped) and result.events[0].payload().reason is None  # type: ignore[attr-defined]
    assert REASON not in result.events[0].model_dump_json()


def test_unknown_destination_bad_priority_and_bad_id_are_rejected_by_field() -> None:
    for changes, field in (
        ({"destination": "elsewhere"}, "destination"),
        ({"priority": "whenever"}, "priority"),
        ({"referral_id": "a b/c"}, "referral_id"),
        ({"program": None}, "program"),
    ):
        result = mapper().map(record(**changes))
        assert isinstance(result, Rejection) and result.reason.startswith(field), (field, result)
        assert REASON not in result.reason


FIELDS = parse_definitions(
    "name: c\nversion: 1\nfields:\n"
    "  housing: {type: enum, values: [housed, unsheltered], label: Housing, sources: [case]}\n"
    "  plan: {type: boolean, label: Safety plan, sources: [case], sensitive: true}\n"
    "  camp: {type: boolean, label: Camp, sources: [cad]}\n",
    "c.yaml",
).from_source("case")


def contact(**custom: Any) -> RawRecord:
    return record(record_type="contact_logged", note=None, custom=custom)


def test_a_case_record_carries_the_county_fields_declared_for_case_records() -> None:
    keys = MemoryKeyring()
    m = CaseMapping(source="cases/acme", agency="COUNTY").mapper(KEY, keys, FIELDS)
    rec = contact(housing="unsheltered", plan=True)
    assert m.persons_to_seal(rec) == [pseudonymize(KEY, "mpi:county", "MPI-1234567")]  # the sensitive one
    result = m.map(rec)
    assert isinstance(result, Mapped)
    event = result.events[0]
    assert event.type == "case.contact.logged.v2" and event.data["incident_id"] == "COUNTY:240770275"
    assert event.data["custom"] == {"housing": "unsheltered"}
    assert unseal(keys, Sealed.model_validate(event.data["custom_sealed"])) == {"custom": {"plan": True}}
    opened = m.map(record(record_type="case_opened", custom={"housing": "housed"}))
    assert isinstance(opened, Mapped) and opened.events[0].data["custom"] == {"housing": "housed"}
    # without a keyring the sensitive value is dropped, never kept clear
    bare = CaseMapping(source="cases/acme", agency="COUNTY").mapper(KEY, None, FIELDS).map(rec)
    assert isinstance(bare, Mapped) and bare.events[0].data["custom_sealed"] is None
    assert "plan" not in bare.events[0].model_dump_json()


def test_undeclared_or_wrong_county_values_reject_the_record_naming_the_field() -> None:
    m = CaseMapping(source="cases/acme", agency="COUNTY").mapper(KEY, MemoryKeyring(), FIELDS)
    for rec, reason in (
        (contact(camp=True), "custom.camp: not a custom field declared for case records"),
        (contact(housing="homeless"), "custom.housing: must be one of housed, unsheltered"),
        (contact(housing=["housed"]), "custom.housing: must be one of housed, unsheltered"),
        (record(custom={"housing": "housed"}), "custom: only case_opened and contact_logged records"),
    ):
        result = m.map(rec)
        assert isinstance(result, Rejection) and result.reason.startswith(reason), (rec.fields, result)
        assert "homeless" not in result.reason
