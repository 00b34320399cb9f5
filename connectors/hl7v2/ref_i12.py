"""Referral → HL7 v2.5.1 ``REF^I12^REF_I12`` (pure: no I/O, no clock).

Segments: MSH (stable MSH-10 from the event id, MSH-7 from the referral time, so a resend is
byte-identical), RF1 (status pending, priority, type, category, originating referral id,
effective date, reason), PRD for the referring (RP) and the referred-to (RT) provider, PID
with only the pseudonymous identifier (PID-5 is the coded pseudo-name, name type ``S``) and
the demographics the destination may receive, DG1 per coded reason, NTE for the reason text
and the note.

Conformance (issue 13, finding 8, checked against HAPI's v2.5.1 validation):

- RF1-3 (CE): the table 0281 type in components 1-3, the hub's service type as the
  alternate code in 4-6 (``Psy^Psychiatric^HL70281^substance_use^substance use^99HUB``);
- DG1-3 names the coding system by table 0396: ``I10C`` for ICD-10-CM, ``I10`` for WHO
  ICD-10, ``SCT`` for SNOMED CT;
- RF1-6 (EI, 30 characters) carries :func:`connectors.referrals.content.hl7_referral_id`:
  the referral id, or its short form when the id is too long (mapped back on the answer);
- a 42 CFR Part 2 (substance-use) referral is marked restricted the ways v2.5.1 has (the
  ARV segment is v2.8+): PV2-22 visit protection indicator ``Y`` (after a PV1 with patient
  class ``N``, not applicable), DG1-18 confidential indicator ``Y`` on every diagnosis, and
  the first NTEs (NTE-4 ``RE`` remark) carry the 42 CFR 2.32 redisclosure notice
  (:data:`connectors.referrals.content.PART2_NOTICE`) and the scope of the consent the
  disclosure is made under (its id, recipient, purpose, end) — before the reason's lines.

Free text (reason text and note, display names) is normalized before escaping
(:func:`connectors.hl7v2.codec.clean_line`): one NTE per line, each line without control
characters and without leading/trailing whitespace, because HL7 v2 receivers do not preserve
that whitespace reliably. The receiver therefore reads exactly the normalized text.

Two builders, one message. :func:`build_ref_i12_reference` is the reference: built with
hl7apy field by field, parsed back with hl7apy and checked (≈15 ms a message).
:func:`build_ref_i12` (the one delivery uses) assembles the same segments as strings — the
ER7 that hl7apy writes: fields joined by ``|`` up to the last one set, whitespace-only
components emptied and trailing empty components dropped. The
property tests prove both return the same bytes (and that hl7apy and the ``hl7`` package
parse them); :func:`self_check` (once per process, by the HL7 transport) and a deterministic
sample of delivered messages (:func:`sampled`) still go through hl7apy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hl7apy.core import Message
from hl7apy.parser import parse_message

from connectors.hl7v2.codec import (
    SENDING_APPLICATION,
    VERSION,
    clean_line,
    control_id,
    escape,
    hl7_ts,
    text_lines,
)
from connectors.referrals.content import (
    HL7_ASSIGNING_AUTHORITY,
    PART2_NOTICE,
    Disclosure,
    hl7_referral_id,
    sample_disclosures,
)
from hub.kernel.errors import ConfigError, PermanentError

PRIORITY = {
    "routine": "R^Routine^HL70280",
    "urgent": "A^ASAP^HL70280",
    "asap": "A^ASAP^HL70280",
    "stat": "S^STAT^HL70280",
}
SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_BH_WORDS = ("behav", "mental", "psych", "crisis", "substance", "sud", "counsel")


class MessageInvalid(PermanentError, ValueError):
    """The rendered message did not parse back (a bug or an unrenderable referral)."""


@dataclass(frozen=True)
class RenderedMessage:
    control_id: str
    er7: str  # segments separated by \r

    def encode(self) -> bytes:
        return self.er7.encode("utf-8")


def referral_type(service_type: str) -> str:
    """RF1-3 (HL7 table 0281): psychiatric for behavioral-health services, medical otherwise."""
    kind = (
        "Psy^Psychiatric^HL70281"
        if any(w in service_type.lower() for w in _BH_WORDS)
        else "Med^Medical^HL70281"
    )
    return kind


def referral_type_field(service_type: str) -> str:
    """RF1-3 (CE, escaped): the table 0281 type, then the service type as the alternate
    identifier, its text and the local coding system (components 4, 5, 6)."""
    code = escape(clean_line(service_type))
    text = escape(clean_line(service_type.replace("_", " ")))
    return f"{referral_type(service_type)}^{code}^{text}^99HUB"


def coding_system(system: str) -> str:
    """HL7 table 0396 name of a FHIR code system URI."""
    if "icd-10-cm" in system:
        return "I10C"
    if "icd-10" in system:
        return "I10"
    if "snomed" in system:
        return "SCT"
    return "99HUB"


#: NTE-4 of the Part 2 notice lines (HL7 table 0364: remark)
NOTICE_COMMENT_TYPE = "RE^Remark^HL70364"


def part2_notice(d: Disclosure) -> list[str]:
    """The notice lines of a Part 2 referral (unescaped; [] for any other): the 42 CFR 2.32
    redisclosure notice and the scope of the consent the disclosure is made under."""
    if not d.request.substance_use:
        return []
    lines = [PART2_NOTICE]
    c = d.consent
    if c is not None:
        until = f", until {c.expires_at.date().isoformat()}" if c.expires_at is not None else ""
        lines.append(clean_line(
            f"Disclosed with the patient's written consent {c.consent_id} to {d.performer.id} "
            f"for {c.purpose}{until}."
        ))
    return lines


def _segment(name: str, *fields: str | None) -> str:
    """One segment as hl7apy writes it: ``name|f1|f2...`` up to the last field that was
    set (``None`` = not set; a field set to ``""`` is written, empty)."""
    values = list(fields)
    while values and values[-1] is None:
        values.pop()
    return "|".join((name, *(v or "" for v in values)))


def _composite(value: str) -> str:
    """A composite field (components joined by ``^``) as hl7apy writes it: a component of
    whitespace only is empty, and trailing empty components are dropped."""
    parts = ["" if p.isspace() else p for p in value.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def build_ref_i12(d: Disclosure) -> RenderedMessage:
    """The REF^I12 of one referral, assembled segment by segment (the bytes of
    :func:`build_ref_i12_reference`); its required fields are checked before it is returned.

    Every value from the referral is escaped (:func:`~connectors.hl7v2.codec.escape`), so
    no value can open a segment, field or component of its own, and the required fields
    (MSH-9, MSH-10, RF1-6, PID-3, two PRD) hold constants; what is checked per message is
    that no segment break slipped in (:class:`MessageInvalid` otherwise)."""
    c = _composite
    r = d.request
    cid = control_id(d.event_id)
    at = hl7_ts(r.at)
    msh = _segment(
        "MSH",
        "^~\\&",
        SENDING_APPLICATION,
        c(escape(d.sending_facility)),
        c(escape(d.performer.id)),
        c(escape(d.performer.id)),
        at,
        None,
        "REF^I12^REF_I12",
        cid,
        "P",
        VERSION,
        None,
        None,
        None,
        None,
        None,
        "UNICODE UTF-8",
    )
    rf1 = _segment(
        "RF1",
        "P^Pending^HL70283",
        PRIORITY[r.priority],
        c(referral_type_field(r.service_type)),
        None,
        "O^Outpatient^HL70284",
        c(f"{escape(hl7_referral_id(r.referral_id))}^{HL7_ASSIGNING_AUTHORITY}"),
        at,
        None,
        None,
        "O^Provider Ordered^HL70336",
    )
    segments = [msh, rf1]
    for role, party in (
        ("RP^Referring Provider^HL70286", d.requester),
        ("RT^Referred to Provider^HL70286", d.performer),
    ):
        name = c(escape(clean_line(party.display)))
        segments.append(_segment("PRD", role, name, None, None, None, None, c(f"{escape(party.id)}^L1")))
    birth = d.birth_date()
    year = d.demographic("birth_year")
    dob = birth.strftime("%Y%m%d") if birth is not None else f"{year:04d}" if year is not None else None
    gender = d.demographic("gender")
    postal = d.demographic("postal_code")
    segments.append(
        _segment(
            "PID",
            "1",
            None,
            c(f"{r.person}^^^{HL7_ASSIGNING_AUTHORITY}^PN"),
            None,
            "PSEUDONYMIZED^^^^^^S",
            None,
            dob,
            SEX[str(gender)] if gender else None,
            None,
            None,
            c(f"^^^^{escape(str(postal))}") if postal else None,
        )
    )
    reason = d.reason
    restricted = d.request.substance_use
    if reason is not None:
        for i, code in enumerate(reason.codes, start=1):
            text = escape(clean_line(code.display)) if code.display else ""
            diagnosis = c(f"{escape(code.code)}^{text}^{coding_system(code.system)}")
            confidential = ("Y",) if restricted else ()
            segments.append(
                _segment("DG1", str(i), None, diagnosis, None, None, "W", *([None] * 11), *confidential)
            )
    if restricted:
        segments.append(_segment("PV1", "1", "N"))
        segments.append(_segment("PV2", *([None] * 21), "Y"))
    n = 0
    for n, text in enumerate(part2_notice(d), start=1):
        segments.append(_segment("NTE", str(n), "P", escape(text), NOTICE_COMMENT_TYPE))
    if reason is not None:
        notes = text_lines(reason.text) + (text_lines(reason.note) if reason.note else [])
        for i, text in enumerate(notes, start=n + 1):
            segments.append(_segment("NTE", str(i), "P", escape(text)))
    if any("\r" in s or "\n" in s for s in segments):
        raise MessageInvalid("REF^I12 does not parse back: a value broke a segment")
    return RenderedMessage(control_id=cid, er7="\r".join(segments))


def build_ref_i12_reference(d: Disclosure) -> RenderedMessage:
    """The reference builder: hl7apy field assignment, parsed back with hl7apy."""
    r = d.request
    cid = control_id(d.event_id)
    m = Message("REF_I12", version=VERSION)
    msh = m.msh
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = escape(d.sending_facility)
    msh.msh_5 = escape(d.performer.id)
    msh.msh_6 = escape(d.performer.id)
    msh.msh_7 = hl7_ts(r.at)
    msh.msh_9 = "REF^I12^REF_I12"
    msh.msh_10 = cid
    msh.msh_11 = "P"
    msh.msh_12 = VERSION
    msh.msh_18 = "UNICODE UTF-8"

    rf1 = m.rf1
    rf1.rf1_1 = "P^Pending^HL70283"
    rf1.rf1_2 = PRIORITY[r.priority]
    rf1.rf1_3 = referral_type_field(r.service_type)
    rf1.rf1_5 = "O^Outpatient^HL70284"
    rf1.rf1_6 = f"{escape(hl7_referral_id(r.referral_id))}^{HL7_ASSIGNING_AUTHORITY}"
    rf1.rf1_7 = hl7_ts(r.at)
    rf1.rf1_10 = "O^Provider Ordered^HL70336"

    for role, party in (
        ("RP^Referring Provider^HL70286", d.requester),
        ("RT^Referred to Provider^HL70286", d.performer),
    ):
        group = m.add_group("REF_I12_PROVIDER_CONTACT")
        group.prd.prd_1 = role
        group.prd.prd_2 = escape(clean_line(party.display))
        group.prd.prd_7 = f"{escape(party.id)}^L1"

    pid = m.pid
    pid.pid_1 = "1"
    pid.pid_3 = f"{r.person}^^^{HL7_ASSIGNING_AUTHORITY}^PN"
    pid.pid_5 = "PSEUDONYMIZED^^^^^^S"
    birth = d.birth_date()
    year = d.demographic("birth_year")
    if birth is not None:
        pid.pid_7 = birth.strftime("%Y%m%d")
    elif year is not None:
        pid.pid_7 = f"{year:04d}"
    gender = d.demographic("gender")
    if gender:
        pid.pid_8 = SEX[str(gender)]
    postal = d.demographic("postal_code")
    if postal:
        pid.pid_11 = f"^^^^{escape(str(postal))}"

    reason = d.reason
    restricted = d.request.substance_use
    if reason is not None:
        for i, code in enumerate(reason.codes, start=1):
            dg1 = m.add_segment("DG1")
            dg1.dg1_1 = str(i)
            text = escape(clean_line(code.display)) if code.display else ""
            dg1.dg1_3 = f"{escape(code.code)}^{text}^{coding_system(code.system)}"
            dg1.dg1_6 = "W"
            if restricted:
                dg1.dg1_18 = "Y"
    if restricted:
        visit = m.add_group("REF_I12_PATIENT_VISIT")
        visit.pv1.pv1_1 = "1"
        visit.pv1.pv1_2 = "N"
        visit.pv2.pv2_22 = "Y"
    n = 0
    for n, text in enumerate(part2_notice(d), start=1):
        nte = m.add_segment("NTE")
        nte.nte_1 = str(n)
        nte.nte_2 = "P"
        nte.nte_3 = escape(text)
        nte.nte_4 = NOTICE_COMMENT_TYPE
    if reason is not None:
        notes = text_lines(reason.text) + (text_lines(reason.note) if reason.note else [])
        for i, text in enumerate(notes, start=n + 1):
            nte = m.add_segment("NTE")
            nte.nte_1 = str(i)
            nte.nte_2 = "P"
            nte.nte_3 = escape(text)
    er7 = m.to_er7()
    check_ref_i12(er7, cid)
    return RenderedMessage(control_id=cid, er7=er7)


def check_ref_i12(er7: str, expected_control_id: str) -> None:
    """Parse a REF^I12 back with hl7apy and check the fields the receiver relies on."""
    try:
        parsed = parse_message(er7, find_groups=True)
    except Exception as exc:
        raise MessageInvalid(f"REF^I12 does not parse back: {type(exc).__name__}") from exc
    problems = []
    if parsed.msh.msh_10.value != expected_control_id:
        problems.append("MSH-10")
    if parsed.msh.msh_9.to_er7() != "REF^I12^REF_I12":
        problems.append("MSH-9")
    if not parsed.rf1.rf1_6.to_er7():
        problems.append("RF1-6")
    if not parsed.pid.pid_3.to_er7():
        problems.append("PID-3")
    if len(parsed.children.get("REF_I12_PROVIDER_CONTACT") or []) != 2:
        problems.append("PRD x2")
    if problems:
        raise MessageInvalid("REF^I12 is missing required fields: " + ", ".join(problems))


#: one delivered message in this many (chosen by event id, so a resend is sampled again) is
#: also parsed back with hl7apy
SAMPLE_EVERY = 1024  # an hl7apy parse costs ≈15 ms: one in 1024 adds ≈15 µs a message


def sampled(event_id: str, every: int = SAMPLE_EVERY) -> bool:
    """Whether the message of ``event_id`` belongs to the hl7apy-checked sample (pure)."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:4], "big") % every == 0


def self_check() -> None:
    """At start-up: the fast builder renders the sample referrals to the same bytes as the
    hl7apy reference builder (which parses them back). Raises
    :class:`hub.kernel.errors.ConfigError` otherwise."""
    for d in sample_disclosures():
        try:
            fast = build_ref_i12(d).er7
            reference = build_ref_i12_reference(d).er7
        except MessageInvalid as exc:
            raise ConfigError(f"HL7 builder self-check: a sample message is invalid ({exc})") from exc
        if fast != reference:
            raise ConfigError("HL7 builder self-check: the fast builder differs from the reference")
