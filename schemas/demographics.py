"""The demographic vocabularies the hub reports on (pure), and the age band of a person at
the time of a contact.

- race: the OMB (SPD 15, 1997) minimum categories, plus ``multiple`` (more than one
  reported) and ``not_reported``;
- ethnicity: OMB's two categories plus ``not_reported``;
- gender: as recorded (``male``, ``female``, ``other``), ``not_reported`` otherwise;
- age band: the age on the day of the contact, in the bands below.

These values only ever travel sealed with the person's key (the intake's
``person.identified`` demographics, the case system's ``case.opened``, an EHR answer);
analysts see them only as suppressed aggregates.
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Literal, get_args

NOT_REPORTED = "not_reported"

Race = Literal[
    "american_indian_or_alaska_native",
    "asian",
    "black_or_african_american",
    "native_hawaiian_or_other_pacific_islander",
    "white",
    "multiple",
    "not_reported",
]
RACES: tuple[str, ...] = get_args(Race)
Ethnicity = Literal["hispanic_or_latino", "not_hispanic_or_latino", "not_reported"]
ETHNICITIES: tuple[str, ...] = get_args(Ethnicity)
ReportedGender = Literal["male", "female", "other", "not_reported"]
GENDERS: tuple[str, ...] = get_args(ReportedGender)
AgeBand = Literal["under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus", "not_reported"]
AGE_BANDS: tuple[str, ...] = get_args(AgeBand)
#: the demographic dimensions, each with its vocabulary (``not_reported`` last)
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "race": RACES,
    "ethnicity": ETHNICITIES,
    "gender": GENDERS,
    "age_band": AGE_BANDS,
}
#: lower bound (years) of each age band but the last
_BAND_FLOORS = ((65, "65_plus"), (55, "55_64"), (45, "45_54"), (35, "35_44"), (25, "25_34"), (18, "18_24"))


def age_on(birth_date: date, day: date) -> int:
    """Completed years of age on ``day`` (a birthday counts on the day itself; 29 February
    birthdays count on 1 March in common years)."""
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def age_band(birth_date: date | None, day: date) -> str:
    """The :data:`AgeBand` of someone born on ``birth_date`` on ``day``; ``not_reported``
    without a birth date or when the birth date is after ``day`` (bad data is not guessed)."""
    if birth_date is None or birth_date > day:
        return NOT_REPORTED
    age = age_on(birth_date, day)
    for floor, band in _BAND_FLOORS:
        if age >= floor:
            return band
    return "under_18"


#: the gender words sources use for "not recorded"
_GENDER_UNKNOWN = frozenset({"unknown", "not_reported", "undisclosed", "declined"})


def normalized(raw: object) -> dict[str, str]:
    """The demographic fields of a source's payload (intake form, case-system record, EHR
    answer) in the hub's vocabularies, for sealing: ``race``, ``ethnicity``, ``gender``,
    ``age_band`` and ``birth_date`` (ISO date), each only when the source reported a
    usable value. A race list of two or more categories is ``multiple``; a value outside
    a vocabulary is dropped (never guessed), as is an unparseable birth date. Pure."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    race = raw.get("race")
    if isinstance(race, list | tuple):
        known = {str(r) for r in race if str(r) in RACES and str(r) not in ("multiple", NOT_REPORTED)}
        race = "multiple" if len(known) > 1 else next(iter(known), None)
    if isinstance(race, str) and race in RACES:
        out["race"] = race
    ethnicity = raw.get("ethnicity")
    if isinstance(ethnicity, str) and ethnicity in ETHNICITIES:
        out["ethnicity"] = ethnicity
    gender = raw.get("gender")
    if isinstance(gender, str) and gender.lower() in GENDERS:
        out["gender"] = gender.lower()
    elif isinstance(gender, str) and gender.lower() in _GENDER_UNKNOWN:
        out["gender"] = NOT_REPORTED
    band = raw.get("age_band")
    if isinstance(band, str) and band in AGE_BANDS:
        out["age_band"] = band
    birth = raw.get("birth_date")
    if isinstance(birth, str | date):
        with contextlib.suppress(ValueError):
            out["birth_date"] = (birth if isinstance(birth, date) else date.fromisoformat(birth)).isoformat()
    return out


#: CDC Race & Ethnicity code system (urn:oid:2.16.840.1.113883.6.238), the codes of the OMB
#: categories (US Core ``ombCategory``, HL7 v2 tables 0005 / 0189)
CDC_RACE_ETHNICITY_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
OMB_RACE_CODES: dict[str, str] = {
    "1002-5": "american_indian_or_alaska_native",
    "2028-9": "asian",
    "2054-5": "black_or_african_american",
    "2076-8": "native_hawaiian_or_other_pacific_islander",
    "2106-3": "white",
}
OMB_ETHNICITY_CODES: dict[str, str] = {
    "2135-2": "hispanic_or_latino",
    "2186-5": "not_hispanic_or_latino",
}


def coded(race_codes: list[str], ethnicity_code: str | None, gender: str | None,
          birth_date: str | None) -> dict[str, str]:
    """:func:`normalized` of an EHR's coded demographics: OMB race codes (two or more
    categories = ``multiple``; a code outside the OMB categories — "other race", a null
    flavor — is dropped), an OMB ethnicity code, a gender word, an ISO birth date."""
    races = [OMB_RACE_CODES[c] for c in race_codes if c in OMB_RACE_CODES]
    return normalized({
        "race": races,
        "ethnicity": OMB_ETHNICITY_CODES.get(ethnicity_code or ""),
        "gender": gender,
        "birth_date": birth_date,
    })
