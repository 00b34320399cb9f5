"""HL7 v2: REF^I12 parses with hl7apy and with the independent ``hl7`` package; ACK and
RRI^I12 reading; MLLP framing; escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import hl7
import pytest
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.hl7v2.ack import AckError, AckInvalid, AckMismatch, build_ack, parse_ack
from connectors.hl7v2.codec import Er7, Er7Error, control_id, escape, parse_hl7_ts, unescape
from connectors.hl7v2.delivery import classify_ack
from connectors.hl7v2.mllp import FrameDecoder, FrameTooLarge, frame
from connectors.hl7v2.ref_i12 import (
    MessageInvalid,
    build_ref_i12,
    build_ref_i12_reference,
    check_ref_i12,
    sampled,
    self_check,
)
from connectors.hl7v2.rri import InboundRefused, build_rri_i12, read_rri
from connectors.referrals.content import PART2_NOTICE, Disclosure, hl7_referral_id
from tests.unit.connectors.referrals.strategies_referrals import disclosures, edge_disclosures

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PSN = "psn_" + "c" * 32


def normalized_line(line: str) -> str:
    """The documented normal form of one free-text line (independent of the builder's code)."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", line).strip()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disclosures())
def test_every_ref_i12_parses_with_hl7apy_and_hl7(d: Disclosure) -> None:
    msg = build_ref_i12(d)
    assert msg.control_id == control_id(d.event_id) and len(msg.control_id) <= 20
    parsed = parse_message(msg.er7, find_groups=True)
    assert parsed.msh.msh_9.to_er7() == "REF^I12^REF_I12"
    assert parsed.msh.msh_10.value == msg.control_id
    other = hl7.parse(msg.er7)
    assert str(other.segment("MSH")[9]) == "REF^I12^REF_I12"
    assert str(other.segment("MSH")[10]) == msg.control_id
    rf1 = other.segment("RF1")
    assert unescape(str(rf1[6][0][0])) == hl7_referral_id(d.request.referral_id)
    assert len(str(rf1[6])) <= 30  # RF1-6 (EI) is 30 characters in v2.5.1
    assert (
        str(rf1[1][0][0]) == "P"
        and str(rf1[2][0][0]) in {"R", "A", "S"}
        and str(rf1[3][0][0]) in {"Psy", "Med"}
    )

    def segs(name: str) -> list:
        return [seg for seg in other if str(seg[0]) == name]

    def field(seg: object, i: int) -> str:
        return str(seg[i]) if len(seg) > i else ""  # type: ignore[arg-type,index]

    prds = segs("PRD")
    assert [str(p[1][0][0]) for p in prds] == ["RP", "RT"]
    assert unescape(str(prds[1][7][0][0])) == d.performer.id
    assert str(other.segment("PID")[3][0][0]) == d.request.person
    assert str(other.segment("PID")[5][0][6]) == "S"  # coded pseudo-name, no real name
    pid = other.segment("PID")
    ntes = [unescape(field(seg, 3)) for seg in segs("NTE")]
    # a Part 2 referral's first NTEs are remarks: the 42 CFR 2.32 notice and the consent's scope
    notices = [unescape(field(seg, 3)) for seg in segs("NTE") if field(seg, 4).startswith("RE^")]
    if d.request.substance_use:
        assert notices and notices[0] == PART2_NOTICE and ntes[: len(notices)] == notices
        assert field(other.segment("PV2"), 22) == "Y"
        assert all(field(dg1, 18) == "Y" for dg1 in segs("DG1"))
    else:
        assert not notices and not segs("PV1") and not segs("PV2")
    if d.reason is not None:
        # HL7 v2 does not keep leading/trailing whitespace: the builder sends each line
        # normalized (control characters dropped, then stripped), and that is what both
        # parsers must read back — text lines first, then the note's lines.
        expected = [
            normalized_line(ln)
            for text in (d.reason.text, d.reason.note or "")
            if text
            for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        ]
        assert ntes[len(notices):] == expected
        hl7apy_ntes = [unescape(n.nte_3.to_er7()) for n in parsed.children.get("NTE") or []]
        assert hl7apy_ntes[len(notices):] == expected
        assert len(segs("DG1")) == len(d.reason.codes)
        expected_sex = {"male": "M", "female": "F", "other": "O", "unknown": "U"}.get(
            d.reason.gender or "", ""
        )
        assert field(pid, 8) == (expected_sex if "gender" in d.shared_demographics else "")
    else:
        assert ntes == notices and not segs("DG1") and field(pid, 8) == ""
    assert build_ref_i12(d).er7 == msg.er7  # a resend is byte-identical


def rendered(build: object, d: Disclosure) -> str | None:
    """The ER7 a builder renders, or None when it refuses the disclosure."""
    try:
        return build(d).er7  # type: ignore[operator,no-any-return]
    except MessageInvalid:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disclosures() | edge_disclosures())
def test_the_fast_builder_renders_the_hl7apy_reference_bytes(d: Disclosure) -> None:
    fast = rendered(build_ref_i12, d)
    assert fast == rendered(build_ref_i12_reference, d)
    if fast is not None:
        check_ref_i12(fast, control_id(d.event_id))  # hl7apy reads back what the fast path wrote
        assert str(hl7.parse(fast).segment("MSH")[10]) == control_id(d.event_id)


def test_self_check_and_the_hl7apy_checked_sample() -> None:
    self_check()  # raises ConfigError when the fast builder and hl7apy disagree
    ids = [f"{i:032x}" for i in range(6400)]
    picked = [i for i in ids if sampled(i)]
    assert 1 <= len(picked) <= 20  # about one in 1024
    assert picked == [i for i in ids if sampled(i)]  # deterministic: a resend is sampled again


def escape_every_time(text: str) -> str:
    """escape() without its fast path (what it did before: every rule, every time)."""
    out = text
    for raw, esc in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(raw, esc)
    out = out.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", out)


@given(st.text(max_size=60) | st.text(st.sampled_from("ab \t\r\n\x00\x1f\x7f|^&~\\"), max_size=20))
def test_escape_fast_path_changes_nothing(text: str) -> None:
    assert escape(text) == escape_every_time(text)


@given(st.text(max_size=200))
def test_escape_roundtrip_single_line(text: str) -> None:
    line = "".join(c for c in text if c >= " " and c != "\x7f")
    assert unescape(escape(line)) == line
    assert not set("|^&~") & set(
        escape(line).replace("\\F\\", "").replace("\\S\\", "").replace("\\T\\", "").replace("\\R\\", "")
    )


@given(
    st.lists(
        st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")), max_size=8
    ),
    st.integers(1, 50),
)
def test_frame_decoder_reassembles_any_chunking(messages: list[bytes], chunk: int) -> None:
    stream = b"".join(frame(m) for m in messages)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    assert got == messages and dec.take_junk() == b""


def test_frame_decoder_reports_junk_and_bounds_size() -> None:
    dec = FrameDecoder(max_frame=10)
    assert dec.feed(b"garbage" + frame(b"MSH|ok")) == [b"MSH|ok"]
    assert dec.take_junk() == b"garbage"
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\x0b" + b"x" * 50)


def test_ack_roundtrip_and_checks() -> None:
    aa = build_ack("AA", acked_control_id="H123", now=NOW)
    assert parse_ack(aa, "H123").accepted
    ae = build_ack("AE", acked_control_id="H123", now=NOW, error=AckError("101", "RF1-6 missing", "RF1^1^6"))
    ack = parse_ack(ae, "H123")
    assert (ack.code, ack.error_code) == ("AE", "101") and "RF1-6" in ack.text
    assert "ERR|" in ae and hl7.parse(ae).segment("ERR")[2][0][0][0] == "RF1"
    with pytest.raises(AckMismatch):
        parse_ack(aa, "H999")
    with pytest.raises(AckInvalid):
        parse_ack("MSH|^~\\&|X|Y|||20240101||ACK|1|P|2.5.1", "H123")
    with pytest.raises(ValueError):
        build_ack("AR", acked_control_id="x", now=NOW)
    # enhanced-mode commit codes read as their original-mode meaning
    assert parse_ack(aa.replace("MSA|AA", "MSA|CA"), "H123").code == "AA"


def test_classify_ack() -> None:
    assert classify_ack(build_ack("AA", acked_control_id="H1", now=NOW).encode(), "H1").verdict == "accepted"
    ar = build_ack("AR", acked_control_id="H1", now=NOW, error=AckError("207", "no"))
    assert classify_ack(ar.encode(), "H1").verdict == "rejected"
    ae = build_ack("AE", acked_control_id="H1", now=NOW, error=AckError("207", "busy"))
    assert classify_ack(ae.encode(), "H1").verdict == "retry"
    assert classify_ack(b"junk", "H1").code == "protocol"
    # an unreadable answer or one for another message: the REF^I12 may have been taken
    assert classify_ack(b"junk", "H1").verdict == "unknown"
    assert classify_ack(build_ack("AA", acked_control_id="H2", now=NOW).encode(), "H1").verdict == "unknown"


def test_read_rri_accepts_answers_and_refuses_bad_input() -> None:
    rri = build_rri_i12(
        control_id="S1",
        ref_control_id="H1",
        referral_id="R-1",
        person=PSN,
        status_code="C",
        now=NOW,
        note="seen\ntwice",
    )
    ans = read_rri(rri)
    assert (ans.referral_id, ans.kind, ans.person, ans.acked_control_id) == ("R-1", "completed", PSN, "H1")
    assert ans.note == "seen\ntwice" and ans.sent_at == NOW
    assert read_rri(rri.replace("RF1|C^Completed", "RF1|P^Pending")).kind is None
    cases = {
        rri.replace("RRI^I12^RRI_I12", "ADT^A01^ADT_A01"): ("AR", "200"),
        rri.replace("RRI^I12^RRI_I12", "RRI^I13^RRI_I12"): ("AR", "201"),
        rri.replace("|2.5.1", "|3.0"): ("AR", "203"),
        rri.replace("RF1|C^Completed", "RF1|Q^Odd"): ("AE", "103"),
        rri.replace("R-1^COHUB", ""): ("AE", "101"),
        rri.replace("|S1|", "||"): ("AE", "101"),
    }
    for text, (code, err) in cases.items():
        with pytest.raises(InboundRefused) as exc:
            read_rri(text)
        assert (exc.value.code, exc.value.error.hl7_code) == (code, err), text
    with pytest.raises(InboundRefused) as exc:
        read_rri("hello")
    assert exc.value.code == "AR"


def test_er7_reader_and_timestamps() -> None:
    m = Er7("MSH|^~\\&|A|B|C|D|20240101||ACK^I12|X\\F\\1|P|2.5.1\rMSA|AA|H1")
    assert m.component("MSH", 10) == "X|1" and m.component("MSH", 9, 2) == "I12"
    assert m.field("PID", 3) == "" and m.component("MSA", 2) == "H1"
    with pytest.raises(Er7Error):
        Er7("PID|1")
    assert parse_hl7_ts("20240601140000+0200") == NOW
    assert parse_hl7_ts("2024") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_hl7_ts("not a time") is None


def test_inbound_frames_are_read_in_their_msh18_charset_without_a_bom() -> None:
    """Issue 13, finding 8: Latin-1 text (MSH-18 ``8859/1``) was garbled because every frame
    was decoded as UTF-8, and a leading byte-order mark got AE."""
    from connectors.hl7v2.codec import decode_frame, frame_charset
    from connectors.hl7v2.rri import triage

    msh = "MSH|^~\\&|EHR|CLINIC|COHUB|COHUB|20240101120000||RRI^I12|L1|P|2.5.1"
    latin = (msh + "||||||8859/1\rNTE|1||Résumé reçu\r").encode("latin-1")
    assert frame_charset(latin) == "latin-1"
    assert "Résumé reçu" in decode_frame(latin)
    utf8 = (msh + "||||||UNICODE UTF-8\rNTE|1||Résumé\r").encode("utf-8")
    assert "Résumé" in decode_frame(utf8)
    assert "Résumé" in decode_frame((msh + "\rNTE|1||Résumé\r").encode("utf-8"))  # no MSH-18: UTF-8
    bom = b"\xef\xbb\xbf" + (msh + "\r").encode()
    text = decode_frame(bom)
    assert text.startswith("MSH|") and triage(text).control_id == "L1"
    assert decode_frame(b"\xff\xfe junk") == "\ufffd\ufffd junk"  # undecodable: replaced, never raised
