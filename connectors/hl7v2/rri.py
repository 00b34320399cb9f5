"""Inbound ``RRI^I12`` (the EHR's answer to a referral) → :class:`ReferralAnswer` (pure).

:func:`read_rri` checks what the hub relies on and refuses the rest with the acknowledgement
HL7 prescribes: ``AR`` for what the hub does not process at all (another message type or
event, an unsupported version or processing id), ``AE`` for an RRI^I12 whose content is
wrong (unparseable, a required field missing — the patient identifier PID-3 included, which
must be the pseudonym the hub sent — an unknown status code). The error names the
field (``RF1^1^6``), never its value.

Read as other engines write it (issue 13, finding 8: HAPI-built answers): the pseudonym is
the PID-3 repetition the hub's identifier is in — assigning authority (CX-4) ``COHUB``, else
identifier type (CX-5) ``PN`` — wherever it stands among the clinic's own identifiers (MRN
first is usual); values are unescaped with the message's own delimiters (a non-default escape
character in MSH-2 included) and every escape sequence (``\\H\\``, ``\\N\\``, ``\\Xhh\\``,
formatting), see :func:`connectors.hl7v2.codec.unescape`; an NTE-3 with repetitions is one
line per repetition. Batches are split before (:func:`connectors.hl7v2.codec.split_batch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from hl7apy.core import Message
from hl7apy.parser import parse_message

from connectors.hl7v2 import ack as A
from connectors.hl7v2.codec import VERSION, Er7, Er7Error, escape, hl7_ts, parse_hl7_ts, text_lines
from connectors.referrals.answers import AnswerKind, rf1_status_answer
from connectors.referrals.content import HL7_ASSIGNING_AUTHORITY
from hub.kernel.errors import PermanentError

_PROCESSING_IDS = {"P", "T", "D"}
_PSEUDONYM = re.compile(r"^psn_[0-9a-f]{32}$")


@dataclass(frozen=True)
class Triage:
    """What can be read from any message, even a broken one, to address the ACK."""

    control_id: str
    sending_application: str
    sending_facility: str
    trigger: str


@dataclass(frozen=True)
class ReferralAnswer:
    control_id: str
    sending_application: str
    sending_facility: str
    referral_id: str
    status_code: str
    kind: AnswerKind | None  # None: a pending answer (acknowledged, no event)
    person: str  # PID-3: the pseudonym of the REF^I12 (required)
    acked_control_id: str  # MSA-2: our REF^I12's MSH-10 ("" when absent)
    note: str
    sent_at: datetime | None


class InboundRefused(PermanentError, ValueError):
    """An inbound message the listener refuses (``code`` AE/AR, ``error`` for the ACK)."""

    def __init__(self, code: A.AckCode, error: A.AckError) -> None:
        super().__init__(error.reason)
        self.code = code
        self.error = error


def triage(text: str) -> Triage:
    """Addressing fields of a message; raises :class:`InboundRefused` (AR) when there is no MSH."""
    try:
        m = Er7(text)
    except Er7Error as exc:
        raise InboundRefused("AR", A.AckError(A.SEGMENT_SEQUENCE_ERROR, str(exc), "MSH^1")) from exc
    return Triage(
        control_id=m.component("MSH", 10).strip()[:199],
        sending_application=m.component("MSH", 3)[:64],
        sending_facility=m.component("MSH", 4)[:64],
        trigger=m.component("MSH", 9, 2)[:8],
    )


def pseudonym(m: Er7) -> str:
    """The identifier PID-3 carries for the hub (stripped; "" when PID-3 is empty): the first
    repetition whose assigning authority (CX-4, its namespace id) is the hub's, else whose
    identifier type (CX-5) is ``PN``, else the first that looks like a pseudonym, else the first."""
    reps = m.repetitions("PID", 3)
    values = [(m.text(r[0]).strip(), r) for r in reps if r and r[0].strip()]
    if not values:
        return ""

    def authority(rep: list[str]) -> str:
        return m.text(rep[3].split(m.subcomponent_sep)[0]).strip().upper() if len(rep) > 3 else ""

    def id_type(rep: list[str]) -> str:
        return m.text(rep[4]).strip().upper() if len(rep) > 4 else ""

    for pick in (
        lambda rep, value: authority(rep) == HL7_ASSIGNING_AUTHORITY,
        lambda rep, value: id_type(rep) == "PN",
        lambda rep, value: bool(_PSEUDONYM.match(value)),
    ):
        for value, rep in values:
            if pick(rep, value):
                return value
    return values[0][0]


def read_rri(text: str) -> ReferralAnswer:
    t = triage(text)
    m = Er7(text)
    if m.component("MSH", 9, 1).upper() != "RRI":
        raise InboundRefused(
            "AR", A.AckError(A.UNSUPPORTED_MESSAGE_TYPE, "only RRI messages are accepted here", "MSH^1^9^1")
        )
    if t.trigger.upper() != "I12":
        raise InboundRefused(
            "AR", A.AckError(A.UNSUPPORTED_EVENT_CODE, "only the I12 event is accepted here", "MSH^1^9^2")
        )
    version = m.component("MSH", 12)
    if not re.fullmatch(r"2\.\d+(\.\d+)?", version):
        raise InboundRefused(
            "AR", A.AckError(A.UNSUPPORTED_VERSION_ID, "unsupported HL7 version", "MSH^1^12")
        )
    if m.component("MSH", 11)[:1].upper() not in _PROCESSING_IDS:
        raise InboundRefused(
            "AR", A.AckError(A.UNSUPPORTED_PROCESSING_ID, "processing id must be P, T or D", "MSH^1^11")
        )
    if not t.control_id:
        raise InboundRefused(
            "AE", A.AckError(A.REQUIRED_FIELD_MISSING, "MSH-10 control id is missing", "MSH^1^10")
        )
    try:
        parse_message(text.replace("\n", "\r"), find_groups=True)
    except Exception as exc:
        raise InboundRefused(
            "AE", A.AckError(A.SEGMENT_SEQUENCE_ERROR, f"RRI^I12 structure is invalid ({type(exc).__name__})")
        ) from exc
    if not m.all("RF1"):
        raise InboundRefused("AE", A.AckError(A.REQUIRED_FIELD_MISSING, "RF1 segment is missing", "RF1"))
    referral_id = m.component("RF1", 6).strip()
    if not referral_id:
        raise InboundRefused(
            "AE", A.AckError(A.REQUIRED_FIELD_MISSING, "RF1-6 originating referral id is missing", "RF1^1^6")
        )
    status_code = m.component("RF1", 1).strip()
    if not status_code and not m.component("RF1", 1, 2):
        raise InboundRefused(
            "AE", A.AckError(A.REQUIRED_FIELD_MISSING, "RF1-1 referral status is missing", "RF1^1^1")
        )
    known, kind = rf1_status_answer(status_code, m.component("RF1", 1, 2))
    if not known:
        raise InboundRefused(
            "AE", A.AckError(A.TABLE_VALUE_NOT_FOUND, "RF1-1 referral status is not in table 0283", "RF1^1^1")
        )
    person = pseudonym(m)
    if not person:
        raise InboundRefused(
            "AE", A.AckError(A.REQUIRED_FIELD_MISSING, "PID-3 patient identifier is missing", "PID^1^3")
        )
    if not _PSEUDONYM.match(person):
        raise InboundRefused(
            "AE",
            A.AckError(A.UNKNOWN_KEY_IDENTIFIER, "PID-3 is not the pseudonym this hub sent", "PID^1^3"),
        )
    notes = [
        m.text(line).replace("\r\n", "\n").replace("\r", "\n")
        for s in m.all("NTE") if len(s) > 3
        for line in s[3].split(m.repetition_sep)
    ]
    return ReferralAnswer(
        control_id=t.control_id,
        sending_application=t.sending_application,
        sending_facility=t.sending_facility,
        referral_id=referral_id,
        status_code=status_code.upper() or m.component("RF1", 1, 2).upper(),
        kind=kind,
        person=person,
        acked_control_id=m.component("MSA", 2).strip(),
        note="\n".join(n for n in notes if n),
        sent_at=parse_hl7_ts(m.component("MSH", 7)),
    )


def build_rri_i12(
    *,
    control_id: str,
    ref_control_id: str,
    referral_id: str,
    person: str,
    status_code: str,
    now: datetime,
    sending_facility: str = "EHR",
    note: str | None = None,
) -> str:
    """An ``RRI^I12`` answering our REF^I12 ``ref_control_id`` (used by the EHR simulator
    and tests; a real EHR's interface engine produces these)."""


    text = {
        "A": "Accepted",
        "R": "Rejected",
        "E": "Expired",
        "C": "Completed",
        "X": "Cancelled",
        "P": "Pending",
    }.get(status_code, status_code)
    m = Message("RRI_I12", version=VERSION)
    m.msh.msh_3 = "EHRSIM"
    m.msh.msh_4 = escape(sending_facility)
    m.msh.msh_5 = "COHUB"
    m.msh.msh_6 = "COHUB"
    m.msh.msh_7 = hl7_ts(now)
    m.msh.msh_9 = "RRI^I12^RRI_I12"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    m.msh.msh_12 = VERSION
    m.msa.msa_1 = "AA"
    m.msa.msa_2 = escape(ref_control_id)
    m.rf1.rf1_1 = f"{escape(status_code)}^{text}^HL70283"
    m.rf1.rf1_6 = f"{escape(referral_id)}^{HL7_ASSIGNING_AUTHORITY}"
    group = m.add_group("RRI_I12_PROVIDER_CONTACT")
    group.prd.prd_1 = "RT^Referred to Provider^HL70286"
    m.pid.pid_1 = "1"
    m.pid.pid_3 = f"{person}^^^{HL7_ASSIGNING_AUTHORITY}^PN"
    m.pid.pid_5 = "PSEUDONYMIZED^^^^^^S"
    if note:
        for i, line in enumerate(text_lines(note), start=1):
            nte = m.add_segment("NTE")
            nte.nte_1 = str(i)
            nte.nte_3 = escape(line)
    return m.to_er7()
