"""Issue 13, finding 8 (HAPI HL7 v2 2.5.1 against the hub), one regression test per item.

Outbound REF^I12: RF1-3's coding system in its own component, ICD-10-CM as ``I10C``, RF1-6
within 30 characters (a long id gets a short form that stays unique), a Part 2 referral
marked restricted and carrying the 42 CFR 2.32 notice. Inbound RRI^I12 / ACK messages are
written here by hand, per the HL7 v2.5.1 and v2.3 chapters (and escaped with the independent
``hl7`` package), never with the hub's own builders: the pseudonym in any PID-3 repetition,
every escape sequence, a non-default escape character, Latin-1 with a byte-order mark,
v2.3/v2.4 error codes, batch-wrapped messages.
"""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest
from hl7apy.parser import parse_message

from connectors.hl7v2.ack import AckMismatch, parse_ack
from connectors.hl7v2.codec import Delimiters, decode_frame, split_batch, unescape, wrap_batch
from connectors.hl7v2.delivery import classify_ack
from connectors.hl7v2.ref_i12 import build_ref_i12, build_ref_i12_reference, coding_system
from connectors.hl7v2.rri import InboundRefused, read_rri
from connectors.referrals.content import (
    PART2_NOTICE,
    Disclosure,
    ReasonCode,
    ReferralReason,
    hl7_referral_id,
    sample_disclosures,
)

PSN = "psn_" + "c" * 32
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def seg(er7: str, name: str, n: int = 0) -> list[str]:
    """Fields of the ``n``-th segment ``name`` (HL7 numbering: index 1 is field 1)."""
    return [s.split("|") for s in er7.split("\r") if s.startswith(name + "|")][n]


def bare() -> Disclosure:
    return sample_disclosures()[0]


def part2() -> Disclosure:
    return sample_disclosures()[1]


def with_request(d: Disclosure, **changes: object) -> Disclosure:
    return d.model_copy(update={"request": d.request.model_copy(update=changes)})


# -- outbound REF^I12


def test_rf1_3_names_the_coding_system_in_the_component_of_its_code() -> None:
    """CE: 1-3 identifier, text, coding system; 4-6 the alternate ones. The hub's service
    type code sat in CE-4 and its system ``99HUB`` in CE-5 (the alternate *text*)."""
    er7 = build_ref_i12(part2()).er7
    parsed = hl7.parse(er7)
    rf1_3 = [str(c) for c in parsed.segment("RF1")[3][0]]
    alternate = ["substance_use_treatment", "substance use treatment", "99HUB"]
    assert rf1_3 == ["Psy", "Psychiatric", "HL70281", *alternate]
    ce = parse_message(er7, find_groups=True).rf1.rf1_3
    assert ce.ce_3.to_er7() == "HL70281" and ce.ce_6.to_er7() == "99HUB"


def test_icd_10_cm_is_sent_as_table_0396_i10c() -> None:
    assert coding_system("http://hl7.org/fhir/sid/icd-10-cm") == "I10C"
    assert coding_system("http://hl7.org/fhir/sid/icd-10") == "I10"  # WHO ICD-10 stays I10
    assert coding_system("http://snomed.info/sct") == "SCT"
    dg1 = seg(build_ref_i12(part2()).er7, "DG1")
    assert dg1[3] == "F10.20^Alcohol dependence^I10C"


@pytest.mark.parametrize("length", [60, 200])
def test_rf1_6_stays_within_30_characters_for_long_referral_ids(length: int) -> None:
    long_a = "R-" + "a" * (length - 2)
    long_b = long_a[:-1] + "b"  # the same first length-1 characters: a prefix would collide
    rf1_6 = [
        seg(build_ref_i12(with_request(bare(), referral_id=rid)).er7, "RF1")[6] for rid in (long_a, long_b)
    ]
    assert all(len(v) <= 30 for v in rf1_6), rf1_6
    assert rf1_6[0] != rf1_6[1]
    assert rf1_6[0] == f"{hl7_referral_id(long_a)}^COHUB"
    assert hl7_referral_id(long_a) == hl7_referral_id(long_a)  # deterministic: a resend is identical
    # the reference builder agrees byte for byte
    d = with_request(bare(), referral_id=long_a)
    assert build_ref_i12(d).er7 == build_ref_i12_reference(d).er7


def test_rf1_6_keeps_an_id_that_fits_and_shortens_one_that_would_not_survive() -> None:
    assert hl7_referral_id("R-2024-000123") == "R-2024-000123"
    assert hl7_referral_id("x" * 24) == "x" * 24  # 24 + "^COHUB" = 30
    assert hl7_referral_id("x" * 25) != "x" * 25
    assert hl7_referral_id("a|b") == "a|b"  # \F\ escaped: 5 characters
    assert hl7_referral_id("|" * 9) != "|" * 9  # 27 once escaped: too long
    # receivers strip surrounding whitespace and HL7 drops control characters: such an id
    # would not come back as sent
    assert hl7_referral_id(" R-1") != " R-1" and hl7_referral_id("R-\x071") != "R-\x071"


def test_a_part2_referral_is_marked_restricted_with_the_redisclosure_notice() -> None:
    """42 CFR Part 2: PV2-22 visit protection indicator, DG1-18 confidential indicator and the
    42 CFR 2.32 notice (with the consent's scope) as the first NTEs, typed as remarks."""
    er7 = build_ref_i12(part2()).er7
    assert seg(er7, "PV1")[1:3] == ["1", "N"]
    assert seg(er7, "PV2")[22] == "Y"
    assert [seg(er7, "DG1", i)[18] for i in range(2)] == ["Y", "Y"]
    assert seg(er7, "NTE", 0)[3:5] == [PART2_NOTICE, "RE^Remark^HL70364"]
    scope = seg(er7, "NTE", 1)[3]
    assert "C-SELF-2" in scope and "clinic-a" in scope and "2024-06-01" in scope
    assert seg(er7, "NTE", 2)[3].startswith("Self-check")  # then the reason's lines
    parsed = parse_message(er7, find_groups=True)  # hl7apy reads the visit group where it belongs
    assert parsed.ref_i12_patient_visit.pv2.pv2_22.to_er7() == "Y"
    assert er7 == build_ref_i12_reference(part2()).er7
    # without Part 2 nothing of it: no visit, no confidential diagnoses, no notice
    plain = part2().model_copy(
        update={"request": part2().request.model_copy(update={"substance_use": False}), "consent": None}
    )
    er7 = build_ref_i12(plain).er7
    assert "PV1|" not in er7 and "PV2|" not in er7 and PART2_NOTICE not in er7
    assert seg(er7, "DG1")[-1] == "W"


def test_a_part2_referral_without_reason_still_carries_the_notice() -> None:
    d = part2().model_copy(update={"reason": None})
    er7 = build_ref_i12(d).er7
    assert seg(er7, "NTE")[3] == PART2_NOTICE and seg(er7, "PV2")[22] == "Y" and "DG1|" not in er7
    assert er7 == build_ref_i12_reference(d).er7
    reason = ReferralReason(text="x", codes=(ReasonCode(code="F11.20"),))
    d = d.model_copy(update={"reason": reason})
    assert seg(build_ref_i12(d).er7, "DG1")[18] == "Y"


# -- inbound RRI^I12 (hand-written per HL7 v2.5.1 chapter 11 / v2.3)


def rri(
    *,
    pid3: str = f"{PSN}^^^COHUB^PN",
    nte: str = "",
    enc: str = "^~\\&",
    version: str = "2.5.1",
    msh18: str = "",
    rf1_6: str = "R-1^COHUB",
) -> str:
    segments = [
        f"MSH|{enc}|EPIC|CLINIC|COHUB|COHUB|20240601120000+0000||RRI^I12^RRI_I12|E100|P|{version}"
        + (f"||||||{msh18}" if msh18 else ""),
        "MSA|AA|H1",
        f"RF1|A^Accepted^HL70283|||||{rf1_6}",
        "PRD|RT^Referred to Provider^HL70286",
        f"PID|1||{pid3}||PSEUDONYMIZED^^^^^^S",
    ]
    if nte:
        segments.append(f"NTE|1||{nte}")
    return "\r".join(segments)


def test_the_pseudonym_is_found_in_any_pid_3_repetition() -> None:
    """HAPI-built answers list the clinic's MRN first; the hub's identifier is the
    repetition with its assigning authority (CX-4) or identifier type (CX-5)."""
    mrn_first = rri(pid3=f"MRN-778^^^CLINIC&1.2.3&ISO^MR~{PSN}^^^COHUB&2.16.840.1.9&ISO^PN")
    assert read_rri(mrn_first).person == PSN
    by_type = rri(pid3=f"MRN-778^^^CLINIC^MR~{PSN}^^^^PN")  # no authority, identifier type PN
    assert read_rri(by_type).person == PSN
    third = rri(pid3=f"1^^^A^MR~2^^^B^PI~{PSN}^^^COHUB^PN")
    assert read_rri(third).person == PSN
    with pytest.raises(InboundRefused) as exc:  # only the clinic's identifiers: not ours
        read_rri(rri(pid3="MRN-778^^^CLINIC^MR~99^^^SSA^SS"))
    assert (exc.value.code, exc.value.error.hl7_code) == ("AE", "204")


def test_every_escape_sequence_is_unescaped() -> None:
    """HL7 v2.5.1 2.7: delimiters, highlighting, hexadecimal data, formatting commands."""
    note = hl7.parse(rri()).escape("a|b^c&d~e\\f")  # escaped by the hl7 package, not by the hub
    assert read_rri(rri(nte=note)).note == "a|b^c&d~e\\f"
    highlighted = "Seen \\H\\today\\N\\ by \\XC3A9\\quipe\\X0A\\B\\.br\\C \\.in+4\\D"
    assert read_rri(rri(nte=highlighted)).note == "Seen today by équipe\nB\nC D"
    assert read_rri(rri(nte="two~lines")).note == "two\nlines"  # NTE-3 repeats: one line each
    assert unescape("\\Zlocal\\ \\X0\\") == "\\Zlocal\\ \\X0\\"  # not understood: left as it is


def test_a_non_default_escape_character_in_msh_2_is_honoured() -> None:
    text = rri(enc="^~#&", nte="A#F#B#S#C #H#bold#N# #XC3A9# #E#", rf1_6="R#T#1^COHUB")
    answer = read_rri(text)
    assert answer.note == "A|B^C bold é #" and answer.referral_id == "R&1"
    assert unescape("x#F#y", Delimiters(escape="#")) == "x|y"
    assert unescape("x\\F\\y", Delimiters(escape="#")) == "x\\F\\y"  # backslash is plain text there


def test_latin1_with_a_byte_order_mark_and_hex_data_in_that_charset() -> None:
    text = rri(msh18="8859/1", nte="Réorienté \\XE9\\")
    frame = b"\xef\xbb\xbf" + text.encode("latin-1")
    answer = read_rri(decode_frame(frame))
    assert answer.note == "Réorienté é" and answer.person == PSN


def test_a_v2_3_rri_is_read() -> None:
    text = rri(version="2.3").replace("RRI^I12^RRI_I12", "RRI^I12")
    answer = read_rri(text)
    assert (answer.referral_id, answer.kind, answer.person) == ("R-1", "accepted", PSN)


# -- ACKs of v2.3 / v2.4 / v2.5 layouts


def test_v2_3_and_v2_4_ack_error_codes_are_read() -> None:
    v23 = ("MSH|^~\\&|EHR|X|COHUB|COHUB|20240601||ACK|A1|P|2.3\r"
           "MSA|AE|H1|Bed board busy|||207^Application internal error^HL70357")
    ack = parse_ack(v23, "H1")
    assert (ack.code, ack.error_code, ack.text) == ("AE", "207", "Bed board busy")
    v24 = ("MSH|^~\\&|EHR|X|COHUB|COHUB|20240601||ACK^I12|A2|P|2.4\rMSA|AR|H1\r"
           "ERR|RF1^1^6^101&Required field missing&HL70357")
    ack = parse_ack(v24, "H1")
    assert (ack.code, ack.error_code, ack.text) == ("AR", "101", "Required field missing")
    v25 = ("MSH|^~\\&|EHR|X|COHUB|COHUB|20240601||ACK^I12^ACK|A3|P|2.5.1\rMSA|AE|H1\r"
           "ERR||RF1^1^6|103^Table value not found^HL70357|E")
    assert parse_ack(v25, "H1").error_code == "103"
    assert classify_ack(v24.encode(), "H1").detail == "101 Required field missing"


def test_a_batch_wrapped_ack_is_read_message_by_message() -> None:
    def ack(cid: str, code: str, of: str) -> str:
        return f"MSH|^~\\&|EHR|X|COHUB|COHUB|20240601||ACK|{cid}|P|2.5.1\rMSA|{code}|{of}"

    batch = "\r".join([
        "FHS|^~\\&|EHR|X|||20240601||||F1", "BHS|^~\\&|EHR|X|||20240601||||B1",
        ack("A1", "AA", "H0"), ack("A2", "AE", "H1"), "BTS|2", "FTS|1",
    ])
    assert parse_ack(batch, "H1").code == "AE"  # the message that acknowledges ours
    assert classify_ack(batch.encode(), "H0").verdict == "accepted"
    with pytest.raises(AckMismatch):
        parse_ack(batch, "H9")


def test_a_batch_of_rri_is_split_and_answered_as_a_batch() -> None:
    one = rri().replace("|E100|", "|E101|")
    two = rri(pid3=f"X^^^CLINIC^MR~{PSN}^^^COHUB^PN").replace("|E100|", "|E102|")
    text = "\n".join(["FHS|^~\\&|EPIC|CLINIC|||20240601||||F7", "BHS|^~\\&|EPIC|CLINIC|||20240601||||B7",
                      one, two, "BTS|2", "FTS|1"])
    batch = split_batch(text)
    assert batch.wrapped and batch.file and (batch.file_control_id, batch.batch_control_id) == ("F7", "B7")
    assert (batch.sending_application, batch.sending_facility) == ("EPIC", "CLINIC")
    assert [read_rri(m).control_id for m in batch.messages] == ["E101", "E102"]
    assert split_batch(one) == split_batch(one).__class__(messages=(one,))  # no wrapper: as it is
    acks = [
        f"MSH|^~\\&|COHUB|COHUB|EPIC|CLINIC|20240601||ACK^I12^ACK|K{i}|P|2.5.1\rMSA|AA|E10{i}" for i in (1, 2)
    ]
    answer = wrap_batch(batch, acks, now=NOW)
    parsed = hl7.parse_file(answer)  # the independent hl7 package reads it as a file of one batch
    assert str(parsed.header[12]) == "F7" and len(parsed) == 1
    inner = parsed[0]
    assert str(inner.header[12]) == "B7" and str(inner.trailer[1]) == "2"
    assert [str(m.segment("MSA")[2]) for m in inner] == ["E101", "E102"]
    latin = "\r".join(["BHS|^~\\&|EPIC|CLINIC", rri(msh18="8859/1", nte="Réorienté"), "BTS|1"])
    frame = b"\xef\xbb\xbf" + latin.encode("latin-1")  # the charset is the first MSH's, past BHS
    assert read_rri(split_batch(decode_frame(frame)).messages[0]).note == "Réorienté"
    empty = split_batch("BHS|^~\\&|EPIC|CLINIC\rBTS|0")
    assert empty.wrapped and empty.messages == () and not empty.file
