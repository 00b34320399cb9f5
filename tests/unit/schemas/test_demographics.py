"""Demographic vocabularies: the age band on the contact day and the normalization of a
source's payload (values outside a vocabulary are dropped, never guessed)."""

from __future__ import annotations

from datetime import date

from schemas.demographics import OMB_ETHNICITY_CODES, OMB_RACE_CODES, RACES, age_band, coded, normalized


def test_age_band_counts_completed_years_on_the_contact_day() -> None:
    born = date(2006, 5, 10)
    assert age_band(born, date(2024, 5, 9)) == "under_18"  # 17 the day before the birthday
    assert age_band(born, date(2024, 5, 10)) == "18_24"  # 18 on the day
    assert age_band(date(1959, 1, 1), date(2024, 1, 1)) == "65_plus"
    assert age_band(date(1959, 1, 2), date(2024, 1, 1)) == "55_64"
    assert age_band(None, date(2024, 1, 1)) == "not_reported"
    assert age_band(date(2030, 1, 1), date(2024, 1, 1)) == "not_reported"  # bad data is not guessed


def test_normalized_keeps_only_vocabulary_values() -> None:
    raw = {"race": ["white", "asian"], "ethnicity": "martian", "gender": "Unknown",
           "birth_date": "1990-02-30", "age_band": "25_34", "given_name": "x"}
    assert normalized(raw) == {"race": "multiple", "gender": "not_reported", "age_band": "25_34"}
    assert normalized({"race": ["white"], "birth_date": "1990-02-28"}) == {
        "race": "white", "birth_date": "1990-02-28"}
    assert normalized("not a dict") == {}


def test_coded_maps_the_omb_code_tables() -> None:
    assert set(OMB_RACE_CODES.values()) == set(RACES) - {"multiple", "not_reported"}
    for code, race in OMB_RACE_CODES.items():
        assert coded([code], None, None, None) == {"race": race}
    for code, ethnicity in OMB_ETHNICITY_CODES.items():
        assert coded([], code, None, None) == {"ethnicity": ethnicity}
    assert coded(["2106-3", "2106-3"], None, None, None) == {"race": "white"}  # one category twice
    both = coded(["2106-3", "2028-9"], None, "F", "1980-01-01")  # a letter is not a gender word
    assert both == {"race": "multiple", "birth_date": "1980-01-01"}
