"""The encounter form's checks: field-level messages that name the field and the rule and
never quote what was typed; configuration checks against the county's intake settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.intake.form import FormInvalid, check_form, parse_amendment, parse_form
from hub.kernel.custom_fields import parse_definitions
from hub.kernel.settings import IntakeDestination, IntakeSettings

NAME, MRN = "Jane Quimby", "MPI-884213"
OPTIONS = IntakeSettings(
    destinations={"clinic-a": IntakeDestination(display="Clinic A", channel="fhir")},
    person_systems=["mpi:county"],
)


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "submission_id": str(uuid.uuid4()),
        "incident_id": "COUNTY:240001",
        "encounter_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "mode": "co_response",
        "outcome": "no_enforcement",
        "use_of_force": "none",
        "person": {"system": "mpi:county", "identifier": MRN, "given_name": "Jane"},
        "referral": {"destination": "clinic-a", "service_type": "outpatient_mh", "reason": NAME},
    }
    b.update(changes)
    return b


def errors(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(FormInvalid) as exc:
        parse_form(raw)
    assert NAME not in str(exc.value) and MRN not in str(exc.value)
    return {e.field: e.message for e in exc.value.errors}


def test_a_complete_form_parses_and_fits_the_configuration() -> None:
    form = parse_form(body())
    assert check_form(form, OPTIONS) == []
    assert form.referral is not None and form.referral.urgency == "routine"


def test_vocabulary_and_missing_fields_are_named() -> None:
    raw = body(outcome=NAME, use_of_force=None)
    del raw["mode"]
    found = errors(raw)
    assert set(found) == {"outcome", "use_of_force", "mode"}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"person": None}, "referral", "needs the person"),
        (
            {"person": None, "referral": None, "consent": {"part2": True, "recipients": ["clinic-a"]}},
            "consent",
            "needs the person",
        ),
        ({"encounter_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "encounter_at", "future"),
        ({"consent": {"general": True, "recipients": []}}, "consent.recipients", "at least one"),
        ({"consent": {"recipients": ["clinic-a"]}}, "consent", "tick general"),
        ({"services_offered": ["housing", "housing"]}, "services_offered", "once"),
        (
            {"person": {"system": "mpi:county", "identifier": MRN, "birth_date": "2999-01-01"}},
            "person.birth_date",
            "future",
        ),
    ],
)
def test_cross_field_rules_name_their_field(changes: dict[str, Any], field: str, words: str) -> None:
    found = errors(body(**changes))
    assert field in found and words in found[field], found


def test_unknown_keys_and_identifiers_are_refused_without_echo() -> None:
    found = errors(body(diagnosis=NAME, person={"system": "mpi:county", "identifier": ""}))
    assert {"diagnosis", "person.identifier"} <= set(found)


def test_configuration_checks() -> None:
    form = parse_form(
        body(
            services_offered=["ballet"],
            person={"system": "ssn", "identifier": MRN},
            referral={"destination": "nowhere", "service_type": "ballet", "reason": "x"},
            consent={"general": True, "recipients": ["elsewhere"]},
        )
    )
    assert {e.field for e in check_form(form, OPTIONS)} == {
        "services_offered",
        "person.system",
        "referral.destination",
        "referral.service_type",
        "consent.recipients",
    }


def test_an_amendment_needs_its_own_id_and_a_reason() -> None:
    raw = {k: v for k, v in body().items() if k not in ("submission_id", "incident_id")}
    with pytest.raises(FormInvalid) as exc:
        parse_amendment(raw)
    assert {e.field for e in exc.value.errors} == {"amendment_id", "reason"}
    assert parse_amendment({**raw, "amendment_id": str(uuid.uuid4()), "reason": "typo"}).reason == "typo"


def test_county_fields_are_checked_against_the_declarations() -> None:
    defs = parse_definitions(
        "name: c\nversion: 1\nfields:\n"
        "  housing: {type: enum, values: [housed, unsheltered], label: Housing, sources: [cad, intake]}\n"
        "  visits: {type: integer, min: 0, max: 9, label: Visits, sources: [intake]}\n"
        "  camp: {type: boolean, label: Camp, sources: [cad]}\n",
        "c.yaml",
    )
    form = parse_form(body(custom={"housing": "homeless", "visits": 10, "camp": True, "x": 1}))
    assert {(e.field, e.message) for e in check_form(form, IntakeSettings(), defs)
            if e.field.startswith("custom")} == {
        ("custom.housing", "must be one of housed, unsheltered"),
        ("custom.visits", "must be at most 9"),
        ("custom.camp", "not a custom field declared for the intake"),
        ("custom.x", "not a custom field declared for the intake"),
    }
    ok = parse_form(body(custom={"housing": "housed", "visits": 9}))
    assert not [e for e in check_form(ok, IntakeSettings(), defs) if e.field.startswith("custom")]
    with pytest.raises(FormInvalid) as bad:
        parse_form(body(custom={"housing": ["a"], "Bad Name": 1}))
    assert {e.field for e in bad.value.errors} == {"custom.housing", "custom"}
