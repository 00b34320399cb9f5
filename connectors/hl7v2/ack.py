"""HL7 v2 acknowledgements (original mode), pure.

- :func:`parse_ack` reads the receiver's answer to one of our messages: MSA-1 ``AA`` accept,
  ``AE`` error (retry), ``AR`` reject (final); enhanced-mode ``CA``/``CE``/``CR`` are read as
  their original-mode equivalents. MSA-2 must echo our MSH-10, otherwise the answer belongs
  to another message and is refused (:class:`AckMismatch`). The error code and text are
  read from every layout in use: v2.5+ ERR-3 / ERR-8, v2.3/v2.4 ERR-1 (ELD: the code is
  its fourth component, ``RF1^1^6^101&Required field missing&HL70357``) and MSA-6 (CE),
  MSA-3 in all of them. An answer wrapped in a batch (BHS … BTS, FHS … FTS) is read from the
  batch's message that acknowledges ours.
- :func:`build_ack` renders our answer to an inbound message, with an ERR segment (HL7
  table 0357 code, location, severity, user message) when the code is AE or AR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from hl7apy.core import Message

from connectors.hl7v2.codec import (
    SENDING_APPLICATION,
    VERSION,
    Er7,
    Er7Error,
    control_id,
    escape,
    hl7_ts,
    split_batch,
)
from hub.kernel.errors import PermanentError

AckCode = Literal["AA", "AE", "AR"]
_ENHANCED = {"CA": "AA", "CE": "AE", "CR": "AR"}

# HL7 table 0357 (message error condition codes) used by the listener.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
APPLICATION_INTERNAL_ERROR = "207"
ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "207": "Application internal error",
}


class AckInvalid(PermanentError, ValueError):
    """The answer is not a readable acknowledgement."""


class AckMismatch(AckInvalid):
    """The acknowledgement's MSA-2 names another message."""


@dataclass(frozen=True)
class Ack:
    code: AckCode
    acked_control_id: str
    text: str = ""
    error_code: str = ""
    message_type: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == "AA"


def parse_ack(er7: str, expected_control_id: str) -> Ack:
    """Read an ACK (or RRI^I12 / any message with an MSA) answering ``expected_control_id``;
    in a batch, the message whose MSA-2 echoes it (else the first one with an MSA)."""
    try:
        candidates = [Er7(text) for text in split_batch(er7).messages]
    except Er7Error as exc:
        raise AckInvalid(str(exc)) from exc
    acks = [m for m in candidates if m.all("MSA")]
    if not acks:
        raise AckInvalid("acknowledgement has no MSA segment")
    msg = next((m for m in acks if m.component("MSA", 2).strip() == expected_control_id), acks[0])
    raw_code = msg.component("MSA", 1).strip().upper()
    code = _ENHANCED.get(raw_code, raw_code)
    if code not in ("AA", "AE", "AR"):
        raise AckInvalid(f"MSA-1 acknowledgement code {raw_code!r} is not AA/AE/AR")
    acked = msg.component("MSA", 2).strip()
    if acked != expected_control_id:
        raise AckMismatch(f"MSA-2 {acked!r} does not echo our MSH-10 {expected_control_id!r}")
    error_code = (
        msg.component("ERR", 3)  # v2.5+: ERR-3 (CWE)
        or msg.subcomponent("ERR", 1, 4, 1)  # v2.3/v2.4: ERR-1 (ELD), its 4th component
        or msg.component("MSA", 6)  # v2.3/v2.4: MSA-6 error condition (CE)
    )
    text = (
        msg.component("MSA", 3)
        or msg.component("ERR", 8)
        or msg.component("ERR", 3, 2)
        or msg.subcomponent("ERR", 1, 4, 2)
        or msg.component("MSA", 6, 2)
    )
    return Ack(
        code=cast(AckCode, code),  # checked against AA/AE/AR above
        acked_control_id=acked,
        text=text[:200],
        error_code=error_code.strip()[:20],
        message_type="^".join(msg.field("MSH", 9).split(msg.component_sep)[:2]),
    )


@dataclass(frozen=True)
class AckError:
    """Why an inbound message was not accepted (free of PHI: names fields, not values)."""

    hl7_code: str
    reason: str
    location: str = ""  # e.g. "RF1^1^6" (segment^sequence^field)


def build_ack(
    code: AckCode,
    *,
    acked_control_id: str,
    now: datetime,
    receiving_application: str = "",
    receiving_facility: str = "",
    trigger: str = "",
    error: AckError | None = None,
) -> str:
    """Our ACK to an inbound message (MSH-5/6 address the sender of that message)."""
    if code != "AA" and error is None:
        raise ValueError("an AE/AR acknowledgement needs an error")
    m = Message("ACK", version=VERSION)
    m.msh.msh_3 = SENDING_APPLICATION
    m.msh.msh_4 = SENDING_APPLICATION
    if receiving_application:
        m.msh.msh_5 = escape(receiving_application)
    if receiving_facility:
        m.msh.msh_6 = escape(receiving_facility)
    m.msh.msh_7 = hl7_ts(now)
    m.msh.msh_9 = f"ACK^{escape(trigger)}^ACK" if trigger else "ACK"
    m.msh.msh_10 = control_id("ack\x1f" + acked_control_id + "\x1f" + code)
    m.msh.msh_11 = "P"
    m.msh.msh_12 = VERSION
    m.msa.msa_1 = code
    m.msa.msa_2 = escape(acked_control_id or "UNKNOWN")
    if error is not None:
        m.msa.msa_3 = escape(error.reason[:80])
        err = m.add_segment("ERR")
        if error.location:
            err.err_2 = error.location
        err.err_3 = f"{error.hl7_code}^{ERROR_TEXT.get(error.hl7_code, 'Error')}^HL70357"
        err.err_4 = "E"
        err.err_8 = escape(error.reason[:250])
    return m.to_er7()
