"""What the simulated EHR's record says of a person (development tooling): race, ethnicity,
administrative sex and birth date drawn deterministically from the person's pseudonym, so
every answer about one person agrees and the demo exercises the EHR as a demographics
source. Written as the EHR would: CDC race / ethnicity codes, HL7 table 0001 sex codes; a
FHIR Patient with the US Core race and ethnicity extensions, or PID-7/8/10/22."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from connectors.fhir.poller import US_CORE_ETHNICITY, US_CORE_RACE
from schemas.demographics import CDC_RACE_ETHNICITY_SYSTEM, OMB_ETHNICITY_CODES, OMB_RACE_CODES

_RACES = (("2106-3",), ("2054-5",), ("2028-9",), ("1002-5",), ("2076-8",), ("2106-3", "2054-5"), ())
_RACE_WEIGHTS = (52, 22, 8, 4, 2, 5, 7)
_ETHNICITIES = ("2135-2", "2186-5", None)
_ETHNICITY_WEIGHTS = (18, 72, 10)
_SEXES = ("M", "F", "O", "U")
_SEX_WEIGHTS = (55, 40, 3, 2)
_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown"}


@dataclass(frozen=True)
class SimDemographics:
    races: tuple[str, ...]  # CDC race codes (none: not recorded)
    ethnicity: str | None  # CDC ethnicity code
    sex: str  # HL7 table 0001
    birth_date: date


def person_demographics(person: str) -> SimDemographics:
    """The record of ``person`` (the same for every answer about them)."""
    rng = random.Random(hashlib.sha256(f"ehr-sim-demographics\x1f{person}".encode()).digest())
    return SimDemographics(
        races=rng.choices(_RACES, _RACE_WEIGHTS)[0],
        ethnicity=rng.choices(_ETHNICITIES, _ETHNICITY_WEIGHTS)[0],
        sex=rng.choices(_SEXES, _SEX_WEIGHTS)[0],
        birth_date=date(1950, 1, 1) + timedelta(days=rng.randrange(56 * 365)),
    )


def fhir_patient(person: str, resource_id: str = "patient") -> dict[str, Any]:
    """A contained FHIR Patient of ``person`` with US Core race / ethnicity."""
    d = person_demographics(person)
    ext: list[dict[str, Any]] = []
    if d.races:
        ext.append({"url": US_CORE_RACE, "extension": [
            *({"url": "ombCategory", "valueCoding": {"system": CDC_RACE_ETHNICITY_SYSTEM, "code": c}}
              for c in d.races),
            {"url": "text", "valueString": "recorded"},
        ]})
    if d.ethnicity:
        ext.append({"url": US_CORE_ETHNICITY, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": CDC_RACE_ETHNICITY_SYSTEM, "code": d.ethnicity}},
            {"url": "text", "valueString": "recorded"},
        ]})
    return {"resourceType": "Patient", "id": resource_id, "extension": ext,
            "gender": _GENDER[d.sex], "birthDate": d.birth_date.isoformat()}


def pid_fields(person: str) -> dict[str, str]:
    """PID-7, PID-8, PID-10 and PID-22 of ``person`` (ER7, HL7 v2.5.1 tables 0001/0005/0189)."""
    d = person_demographics(person)
    names = {**OMB_RACE_CODES, **OMB_ETHNICITY_CODES}
    race = "~".join(f"{c}^{names[c].replace('_', ' ').title()}^CDCREC" for c in d.races)
    ethnic = {"2135-2": "H^Hispanic or Latino^HL70189", "2186-5": "N^Not Hispanic or Latino^HL70189"}
    return {"7": d.birth_date.strftime("%Y%m%d"), "8": d.sex, "10": race,
            "22": ethnic.get(d.ethnicity or "", "")}
