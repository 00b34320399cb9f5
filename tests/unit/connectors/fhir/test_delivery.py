"""Issue 13, finding 8: a validating FHIR server's 4xx was always a final rejection, so a
referral it would have taken a moment later was lost. After FHIR R4's http page and the
IssueType code system, a transient 4xx is retried within the budget; a content error
(400/422 with an error OperationOutcome) is final and keeps the server's diagnostics."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.fhir.delivery import TRANSIENT_ISSUES, classify_response, transient_outcome


def outcome(*issues: tuple[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": sev, "code": code, "diagnostics": f"{code} happened"} for sev, code in issues],
    }


@pytest.mark.parametrize("status", [408, 409, 423, 425, 429])
def test_transient_statuses_are_retried_whatever_the_body(status: int) -> None:
    for body in (None, outcome(("error", "invalid")), outcome(("error", "conflict"))):
        assert classify_response(status, body).verdict == "retry"


@pytest.mark.parametrize("code", sorted(TRANSIENT_ISSUES))
@pytest.mark.parametrize("status", [400, 403, 404, 412, 422])
def test_a_4xx_whose_errors_are_all_transient_is_retried(status: int, code: str) -> None:
    result = classify_response(status, outcome(("error", code), ("warning", "informational")))
    assert result.verdict == "retry" and code in result.detail


@pytest.mark.parametrize("status", [400, 422])
def test_a_content_error_is_final_and_recorded_with_its_diagnostics(status: int) -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error", "code": "invalid", "expression": ["Patient.birthDate"],
            "diagnostics": "Not a valid date",
        }],
    }
    result = classify_response(status, body)
    assert (result.verdict, result.code) == ("rejected", str(status))
    assert result.detail == "error/invalid @Patient.birthDate: Not a valid date"


def test_one_content_error_among_transient_ones_makes_the_answer_final() -> None:
    body = outcome(("error", "throttled"), ("fatal", "business-rule"))
    assert classify_response(422, body).verdict == "rejected"
    assert not transient_outcome(body)


def test_what_is_not_an_operation_outcome_is_not_transient() -> None:
    assert not transient_outcome(None) and not transient_outcome({"resourceType": "Bundle"})
    assert not transient_outcome({"resourceType": "OperationOutcome", "issue": []})
    assert not transient_outcome({"resourceType": "OperationOutcome", "issue": ["junk"]})
    assert transient_outcome(outcome(("warning", "throttled")))  # no errors: the issues it has
    assert classify_response(400, None).verdict == "rejected"  # a bare 400: the request is bad
    junk = {"resourceType": "OperationOutcome", "issue": ["junk"]}
    assert classify_response(422, junk).verdict == "rejected"
