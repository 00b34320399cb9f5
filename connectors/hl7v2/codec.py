"""HL7 v2 helpers shared by the builders and parsers (pure).

- :func:`escape` turns one line of free text into an HL7 v2 field value (delimiters as
  ``\\F\\`` ``\\S\\`` ``\\T\\`` ``\\R\\`` ``\\E\\``; a line break becomes a space: multi-line
  text goes into one NTE per line, see :func:`text_lines`), :func:`unescape` reverses it
  (and also reads ``\\.br\\`` from other senders as a line break);
- :func:`clean_line` / :func:`text_lines` normalize free text before it is escaped: HL7 v2
  does not preserve leading/trailing whitespace reliably (parsers trim segment ends), so each
  line is stripped of it and of control characters — the sent text is the normalized text;
- :func:`control_id` derives a stable MSH-10 from an event id (a resend of the same event
  carries the same control id, which is what lets the receiver discard the duplicate);
- :func:`hl7_ts` renders an aware datetime as an HL7 TS with its UTC offset;
- :func:`decode_frame` turns a received frame into text in the character set its MSH-18
  names (Latin-1 for ``8859/1``: issue 13 finding 8, such text was garbled when every frame
  was read as UTF-8), without a leading byte-order mark.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

from hub.kernel.errors import PermanentError

VERSION = "2.5.1"
SENDING_APPLICATION = "COHUB"
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_UNESCAPES = {"E": "\\", "F": "|", "S": "^", "T": "&", "R": "~", ".br": "\n"}
_ESCAPE_RE = re.compile(r"\\(E|F|S|T|R|\.br)\\")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape(text: str) -> str:
    """One field/component value from free text; line breaks become spaces and other
    control characters are dropped."""
    out = text
    for raw, esc in _ESCAPES:
        out = out.replace(raw, esc)
    out = out.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return _CONTROL.sub("", out)


def clean_line(text: str) -> str:
    """One line of free text in the form HL7 v2 carries reliably: line breaks become
    spaces, control characters are dropped, and leading/trailing whitespace is stripped.

    Receivers (hl7apy, the ``hl7`` package, most interface engines) trim whitespace at the
    end of a segment or message, so a trailing space would survive in one field position and
    vanish in another; the builders normalize every free-text value up front so that what we
    send is exactly what any receiver reads back. Escaping (:func:`escape`) comes after.
    """
    one = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return _CONTROL.sub("", one).strip()


def text_lines(text: str) -> list[str]:
    """Free text as normalized lines (one NTE segment each, see :func:`clean_line`): each
    line stripped of control characters and leading/trailing whitespace; empty or
    whitespace-only lines are kept as one blank so the line structure survives."""
    return [clean_line(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def unescape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _UNESCAPES[m.group(1)], value)


def control_id(event_id: str) -> str:
    """MSH-10 for the message rendering one event: 20 characters (the ST limit), stable."""
    return "H" + hashlib.sha256(event_id.encode()).hexdigest()[:19].upper()


def hl7_ts(at: datetime) -> str:
    """``YYYYMMDDHHMMSS+0000`` (UTC)."""
    if at.tzinfo is None:
        raise ValueError("HL7 timestamps are rendered from aware datetimes only")
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def parse_hl7_ts(value: str) -> datetime | None:
    """An HL7 TS (``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]``) as an aware datetime, or None."""
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?", value.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, tz = m.groups()
    try:
        naive = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    if tz:
        sign = 1 if tz[0] == "+" else -1
        offset = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])))
        return naive.replace(tzinfo=offset).astimezone(UTC)
    return naive.replace(tzinfo=UTC)


#: MSH-18 character sets (HL7 table 0211) → Python codecs; absent: UTF-8
_CHARSETS = {
    "": "utf-8", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8",
    "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/5": "iso8859-5", "8859/7": "iso8859-7",
    "8859/15": "iso8859-15",
}
_BOMS = (b"\xef\xbb\xbf",)


def frame_charset(payload: bytes) -> str:
    """The Python codec for a frame's MSH-18 (read from the raw bytes: the header is ASCII);
    UTF-8 when absent or unknown."""
    head = payload.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not head.startswith(b"MSH") or len(head) < 4:
        return "utf-8"
    fields = head.split(head[3:4])
    raw = fields[17].split(b"~")[0] if len(fields) > 17 else b""
    return _CHARSETS.get(raw.strip().decode("ascii", errors="replace").upper(), "utf-8")


def decode_frame(payload: bytes) -> str:
    """A received frame as text: a leading UTF-8 byte-order mark dropped, decoded in the
    character set MSH-18 names (undecodable bytes replaced, never an exception)."""
    for bom in _BOMS:
        if payload.startswith(bom):
            payload = payload[len(bom):]
    return payload.decode(frame_charset(payload), errors="replace")


class Er7Error(PermanentError, ValueError):
    """The bytes are not an ER7-encoded HL7 v2 message (no MSH, bad encoding characters)."""


class Er7:
    """A minimal, tolerant ER7 reader (no schema): enough to route a message, find its
    control id and read an ACK from any v2.x sender, even one hl7apy cannot parse.

    ``field("MSH", 10)`` uses HL7 numbering (MSH-1 is the field separator itself).
    """

    def __init__(self, text: str) -> None:
        text = text.lstrip("\ufeff").strip("\r\n \x0b\x1c")
        segs = [s for s in re.split(r"\r\n|\r|\n", text) if s.strip()]
        if not segs or not segs[0].startswith("MSH") or len(segs[0]) < 8:
            raise Er7Error("message does not start with an MSH segment")
        self.field_sep = segs[0][3]
        enc = segs[0][4:8]
        if self.field_sep.isalnum() or len(set(enc + self.field_sep)) != 5 or any(c.isalnum() for c in enc):
            raise Er7Error("MSH-1/MSH-2 encoding characters are invalid")
        self.component_sep, self.repetition_sep, self.escape_char, self.subcomponent_sep = (
            enc[0], enc[1], enc[2], enc[3]
        )
        self.segments: list[list[str]] = []
        for seg in segs:
            parts = seg.split(self.field_sep)
            if seg.startswith("MSH"):
                parts = ["MSH", self.field_sep, *parts[1:]]
            self.segments.append(parts)

    def all(self, name: str) -> list[list[str]]:
        return [s for s in self.segments if s[0] == name]

    def field(self, seg: str, index: int, occurrence: int = 0) -> str:
        found = self.all(seg)
        if len(found) <= occurrence or len(found[occurrence]) <= index:
            return ""
        return found[occurrence][index]

    def component(self, seg: str, index: int, comp: int = 1, occurrence: int = 0) -> str:
        """First repetition's component ``comp`` (1-based), unescaped."""
        value = self.field(seg, index, occurrence).split(self.repetition_sep)[0]
        parts = value.split(self.component_sep)
        return unescape(parts[comp - 1]) if len(parts) >= comp else ""
