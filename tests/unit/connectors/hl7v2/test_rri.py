"""RRI^I12 answers as a demographics source: PID-7 birth date, PID-8 sex (table 0001),
PID-10 race (table 0005, CDC codes) and PID-22 ethnic group (table 0189) read into the
hub's OMB vocabularies, from hand-written messages and from the hub's own builder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.hl7v2.rri import build_rri_i12, read_rri

PERSON = "psn_" + "a" * 32


def rri(pid_tail: str) -> str:
    """A hand-written RRI^I12 (HL7 v2.5) whose PID continues with ``pid_tail`` after PID-5."""
    return "\r".join([
        "MSH|^~\\&|EHR|CLINIC|COHUB|COHUB|20240301120000+0000||RRI^I12|C1|P|2.5",
        "MSA|AA|Q1",
        "RF1|A^Accepted^HL70283|||||ref-1^COHUB",
        "PRD|RT^Referred to Provider^HL70286",
        f"PID|1||{PERSON}^^^COHUB^PN||PSEUDONYMIZED{pid_tail}",
    ]) + "\r"


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("||19800229|F||2106-3^White^CDCREC||||||||||||N^Not Hispanic^HL70189",
         {"race": "white", "ethnicity": "not_hispanic_or_latino", "gender": "female",
          "birth_date": "1980-02-29"}),
        # two OMB categories: multiple; Hispanic by table 0189 letter; a time after the date
        ("||198002151230|M||2106-3^White^CDCREC~2054-5^Black^CDCREC||||||||||||H",
         {"race": "multiple", "ethnicity": "hispanic_or_latino", "gender": "male",
          "birth_date": "1980-02-15"}),
        # CDC ethnicity code, sex unknown, "other race" dropped (not an OMB category)
        ("|||U||2131-1^Other Race^CDCREC||||||||||||2135-2^Hispanic or Latino^CDCREC",
         {"ethnicity": "hispanic_or_latino", "gender": "not_reported"}),
        # a partial birth date and unknown codes: dropped, never guessed
        ("||1980|X||W||||||||||||Q", {}),
        ("", {}),  # no demographics at all
    ],
)
def test_pid_demographics_in_omb_vocabularies(tail: str, expected: dict[str, str]) -> None:
    assert read_rri(rri(tail)).demographics == expected


def test_builder_writes_what_the_reader_reads() -> None:
    text = build_rri_i12(
        control_id="r1", ref_control_id="q1", referral_id="ref-1", person=PERSON, status_code="A",
        now=datetime(2024, 3, 1, tzinfo=UTC),
        pid={"7": "19991231", "8": "O", "10": "2028-9^Asian^CDCREC", "22": "N^Not Hispanic^HL70189"},
    )
    assert read_rri(text).demographics == {
        "race": "asian", "ethnicity": "not_hispanic_or_latino", "gender": "other", "birth_date": "1999-12-31",
    }
