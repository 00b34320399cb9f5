"""A Task's answer as a demographics source: the Patient the Task is for (contained, or
included in the search page) read into the hub's OMB vocabularies — US Core race and
ethnicity (``ombCategory``), ``gender``, ``birthDate`` — from hand-written resources."""

from __future__ import annotations

from typing import Any

from connectors.fhir.poller import US_CORE_ETHNICITY, US_CORE_RACE, patient_demographics, read_task
from connectors.referrals.content import TASK_SYSTEM

CDC = "urn:oid:2.16.840.1.113883.6.238"


def omb(url: str, *codes: str) -> dict[str, Any]:
    return {"url": url, "extension": [
        *({"url": "ombCategory", "valueCoding": {"system": CDC, "code": c}} for c in codes),
        {"url": "detailed", "valueCoding": {"system": CDC, "code": "2108-9"}},  # European: not OMB
        {"url": "text", "valueString": "as recorded"},
    ]}


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def task(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "id": "t1", "status": "accepted",
            "identifier": [{"system": TASK_SYSTEM, "value": "ref-1"}], **fields}


def test_us_core_patient_in_omb_vocabularies() -> None:
    p = patient(extension=[omb(US_CORE_RACE, "2106-3"), omb(US_CORE_ETHNICITY, "2135-2")],
                gender="female", birthDate="2006-05-10")
    assert patient_demographics(p) == {
        "race": "white", "ethnicity": "hispanic_or_latino", "gender": "female", "birth_date": "2006-05-10",
    }
    two = patient(extension=[omb(US_CORE_RACE, "2028-9", "1002-5")], gender="unknown", birthDate="1980")
    assert patient_demographics(two) == {"race": "multiple", "gender": "not_reported"}  # partial date dropped
    assert patient_demographics(patient(extension=[omb(US_CORE_RACE, "2131-1")])) == {}  # other race
    assert patient_demographics(None) == {}


def test_the_tasks_patient_contained_or_included() -> None:
    record = patient(extension=[omb(US_CORE_RACE, "2054-5")], gender="male")
    contained = read_task(task(contained=[record], **{"for": {"reference": "#p1"}}))
    assert contained is not None and contained.demographics == {"race": "black_or_african_american",
                                                                "gender": "male"}
    included = read_task(task(**{"for": {"reference": "Patient/p1"}}), [record])
    assert included is not None and included.demographics == contained.demographics
    other = read_task(task(**{"for": {"reference": "Patient/p2"}}), [record])  # not this Task's person
    assert other is not None and other.demographics == {}
