"""The FHIR builder: every Bundle validates, discloses only what it may, and is a stable set
of conditional creates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings

from connectors.fhir.bundle import (
    BundleInvalid,
    build_referral_bundle,
    bundle_bytes,
    fhir_strings,
    validate_bundle,
)
from connectors.fhir.delivery import classify_response, outcome_summary
from connectors.fhir.poller import read_task
from connectors.referrals.content import (
    PERSON_SYSTEM,
    REFERRAL_SYSTEM,
    TASK_SYSTEM,
    Disclosure,
    ReferralReason,
)
from tests.unit.connectors.referrals.strategies_referrals import disclosures


def by_type(bundle: dict) -> dict[str, dict]:
    return {e["resource"]["resourceType"]: e for e in bundle["entry"]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disclosures())
def test_every_bundle_validates_and_follows_the_closed_loop_pattern(d: Disclosure) -> None:
    bundle = build_referral_bundle(d)
    model = validate_bundle(json.loads(bundle_bytes(bundle)))  # the wire form validates too
    assert isinstance(model, Bundle) and model.type == "transaction"
    entries = by_type(bundle)
    expected = {"Patient", "ServiceRequest", "Task"} | ({"Consent"} if d.request.substance_use else set())
    assert set(entries) == expected
    for e in bundle["entry"]:  # conditional creates on business identifiers
        assert e["request"]["method"] == "POST" and e["request"]["ifNoneExist"].startswith("identifier=")
    sr, task, patient = (entries[t]["resource"] for t in ("ServiceRequest", "Task", "Patient"))
    assert sr["identifier"] == [{"system": REFERRAL_SYSTEM, "value": d.request.referral_id}]
    assert sr["priority"] == d.request.priority and sr["intent"] == "order"
    assert sr["requester"]["identifier"]["value"] == d.requester.id
    assert sr["performer"][0]["identifier"]["value"] == d.performer.id
    assert "occurrencePeriod" in sr
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["focus"]["reference"] == entries["ServiceRequest"]["fullUrl"]
    assert task["for"]["reference"] == entries["Patient"]["fullUrl"]
    assert task["identifier"][0]["system"] == TASK_SYSTEM
    # the Patient carries the pseudonym and only the demographics the destination may receive
    assert patient["identifier"] == [{"system": PERSON_SYSTEM, "value": d.request.person}]
    allowed = {"resourceType", "identifier"}
    if d.reason is not None:
        if "gender" in d.shared_demographics and d.reason.gender:
            allowed.add("gender")
        if d.reason.birth_date and d.shared_demographics & {"birth_date", "birth_year"}:
            allowed.add("birthDate")
        if "postal_code" in d.shared_demographics and d.reason.postal_code:
            allowed.add("address")
    assert set(patient) == allowed
    if d.reason is not None:
        assert sr.get("reasonCode", [{}])[0].get("text", "") == fhir_strings(d.reason.text)  # "" is dropped
    else:
        assert "reasonCode" not in sr
    if d.request.substance_use:
        consent = entries["Consent"]["resource"]
        assert consent["provision"]["actor"][0]["reference"]["identifier"]["value"] == d.request.destination
        assert any(s["code"] == "42CFRPart2" for s in sr["meta"]["security"])
    assert bundle_bytes(build_referral_bundle(d)) == bundle_bytes(bundle)  # resend = same bytes


def test_invalid_content_is_refused_with_a_location_and_no_values() -> None:
    with pytest.raises(BundleInvalid, match=r"Bundle\.type"):
        validate_bundle({"resourceType": "Bundle", "type": "nonsense"})
    bad = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "birthDate": "1990-13-45"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    with pytest.raises(BundleInvalid) as err:
        validate_bundle(bad)
    assert "birthDate" in str(err.value) and "1990-13-45" not in str(err.value)


def test_classify_fhir_answers() -> None:
    ok = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "200 OK", "location": "Patient/1/_history/1"}},
            {"response": {"status": "201 Created", "location": "ServiceRequest/abc/_history/1"}},
        ],
    }
    r = classify_response(200, ok)
    assert (r.verdict, r.remote_id) == ("accepted", "ServiceRequest/abc")
    oo = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "business-rule", "diagnostics": "no capacity"}],
    }
    r = classify_response(422, oo)
    assert r.verdict == "rejected" and "business-rule" in r.detail and "no capacity" in r.detail
    for status in (408, 429, 500, 503):
        assert classify_response(status, oo).verdict == "retry"
    for status in (502, 504):  # a gateway lost the answer: the EHR may have stored it
        assert classify_response(status, oo).verdict == "unknown"
    # a 2xx we cannot read may have stored the referral: outcome unknown, not "not delivered"
    assert classify_response(200, {"resourceType": "Bundle", "type": "batch-response"}).verdict == "unknown"
    assert outcome_summary(None) == "no OperationOutcome"


def test_read_task_maps_status_and_ignores_foreign_tasks() -> None:
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": "in-progress",
        "identifier": [{"system": TASK_SYSTEM, "value": "R-1"}],
        "meta": {"lastUpdated": "2024-05-01T10:00:00+00:00"},
    }
    ans = read_task(task)
    assert ans is not None and ans.referral_id == "R-1" and ans.kind == "accepted"
    assert ans.last_updated == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert ans.changed_at == ans.last_updated  # no lastModified: the record time stands in
    # The EHR's own time of the change (Task.lastModified) is the answer's time; the server's
    # record time (meta.lastUpdated) stays the poll cursor.
    reported = read_task({**task, "lastModified": "2024-03-04T08:30:00-05:00"})
    assert reported is not None and reported.last_updated == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert reported.changed_at == datetime(2024, 3, 4, 13, 30, tzinfo=UTC)
    assert read_task({**task, "lastModified": "garbage"}).changed_at == ans.last_updated  # type: ignore[union-attr]
    assert read_task({**task, "status": "rejected"}).kind == "declined"  # type: ignore[union-attr]
    assert read_task({**task, "status": "received"}).kind is None  # type: ignore[union-attr]
    assert read_task({**task, "identifier": [{"system": "urn:other", "value": "R-1"}]}) is None


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disclosures())
def test_control_characters_in_free_text_never_reach_the_wire(d: Disclosure) -> None:
    """Issue 13, finding 8: a form feed or a backspace in the reason made HAPI's validator
    refuse the Bundle (a FHIR ``string`` holds no character below 32 but tab, CR, LF)."""
    reason = ReferralReason(
        text="Crisis\x0cfollow\x08-up\x00", note="line one\nline\x1b two\t.", gender="female"
    )
    bundle = build_referral_bundle(d.model_copy(update={"reason": reason}))
    wire = json.loads(bundle_bytes(bundle))
    # the spec: no character below 32 but tab, CR and LF
    forbidden = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
    assert not any(forbidden.search(s) for s in _strings(wire))
    sr = by_type(wire)["ServiceRequest"]["resource"]
    assert sr["reasonCode"][0]["text"] == "Crisisfollow-up"
    assert sr["note"] == [{"text": "line one\nline two\t."}]  # tab and newline are allowed


def test_an_element_left_empty_by_cleaning_is_dropped_not_sent_empty() -> None:
    """A note made only of control characters (found by the property test above) leaves no
    ``note: [{}]`` behind, which the R4B models refuse; empty values the builder put there
    on purpose are not touched."""
    cleaned = fhir_strings({"note": [{"text": "\x1b"}], "status": "active", "kept": ""})
    assert cleaned == {"status": "active", "kept": ""}
    assert fhir_strings({"note": [{"text": "ok\x0c"}]}) == {"note": [{"text": "ok"}]}
