"""HL7 v2 helpers shared by the builders and parsers (pure).

- :func:`escape` turns one line of free text into an HL7 v2 field value (delimiters as
  ``\\F\\`` ``\\S\\`` ``\\T\\`` ``\\R\\`` ``\\E\\``; a line break becomes a space: multi-line
  text goes into one NTE per line, see :func:`text_lines`), :func:`unescape` reverses it and
  reads every escape sequence of HL7 v2.5.1 chapter 2.7 another sender may use: the
  delimiters (as the message declares them in MSH-1/MSH-2, whatever its escape character),
  highlighting ``\\H\\``/``\\N\\`` (dropped: plain text has none), hexadecimal data
  ``\\Xhh…\\`` (decoded in the message's MSH-18 character set), formatting commands
  (``\\.br\\``/``\\.sp\\`` a line break, the others dropped) and character-set switches
  ``\\C…\\``/``\\M…\\`` (dropped); any other sequence stays as it was;
- :func:`clean_line` / :func:`text_lines` normalize free text before it is escaped: HL7 v2
  does not preserve leading/trailing whitespace reliably (parsers trim segment ends), so each
  line is stripped of it and of control characters — the sent text is the normalized text;
- :func:`control_id` derives a stable MSH-10 from an event id (a resend of the same event
  carries the same control id, which is what lets the receiver discard the duplicate);
- :func:`hl7_ts` renders an aware datetime as an HL7 TS with its UTC offset;
- :func:`decode_frame` turns a received frame into text in the character set its MSH-18
  names (Latin-1 for ``8859/1``: issue 13 finding 8, such text was garbled when every frame
  was read as UTF-8), without a leading byte-order mark;
- :func:`split_batch` reads a batch (``FHS``/``BHS`` … ``BTS``/``FTS``, HL7 v2.5.1 chapter
  2.10.3) message by message, and :func:`wrap_batch` wraps the answers the same way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from hub.kernel.errors import PermanentError

VERSION = "2.5.1"
SENDING_APPLICATION = "COHUB"
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
#: an escape sequence's body (between two escape characters): a letter or a formatting
#: command's dot, then letters, digits and the signs of ``\\.in+4\\``
_SEQUENCE = r"([A-Za-z.][A-Za-z0-9.+\-]*)"
_ESCAPE_RE = re.compile(r"\\" + _SEQUENCE + r"\\")
_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2})+)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NEEDS_ESCAPE = re.compile(r"[\\|^&~\x00-\x1f\x7f]")  # anything escape() would change


def escape(text: str) -> str:
    """One field/component value from free text; line breaks become spaces and other
    control characters are dropped."""
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: nothing to do
        return text
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


@dataclass(frozen=True)
class Delimiters:
    """A message's encoding characters (MSH-1 and MSH-2); the defaults are ``|^~\\&``."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


DEFAULT_DELIMITERS = Delimiters()


def unescape(value: str, delimiters: Delimiters = DEFAULT_DELIMITERS, charset: str = "utf-8") -> str:
    """The text of one field/component value as another sender wrote it (see the module
    docstring): escape sequences use ``delimiters.escape``; ``\\Xhh\\`` bytes are decoded
    in ``charset`` (a Python codec; undecodable bytes replaced)."""
    esc = delimiters.escape
    if esc not in value:
        return value
    pattern = _ESCAPE_RE if esc == "\\" else re.compile(re.escape(esc) + _SEQUENCE + re.escape(esc))
    mapping = {
        "F": delimiters.field, "S": delimiters.component, "T": delimiters.subcomponent,
        "R": delimiters.repetition, "E": esc, "H": "", "N": "",
    }

    def one(m: re.Match[str]) -> str:
        seq = m.group(1)
        if seq in mapping:
            return mapping[seq]
        hexdata = _HEX.fullmatch(seq)
        if hexdata:
            return bytes.fromhex(hexdata.group(1)).decode(charset, errors="replace")
        if seq.startswith("."):  # formatting commands (FT): line breaks kept, layout dropped
            return "\n" if seq.startswith((".br", ".sp")) else ""
        if seq[0] in "CM":  # switch to another character set: plain text keeps the characters
            return ""
        return m.group(0)

    return pattern.sub(one, value)


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
    """The Python codec for a frame's MSH-18 (read from the raw bytes: the header is ASCII),
    of its first MSH — a batch's (FHS/BHS) comes first; UTF-8 when absent or unknown."""
    head = next(
        (seg for seg in re.split(rb"\r\n|\r|\n", payload[:65536].lstrip(b"\xef\xbb\xbf"))
         if seg.startswith(b"MSH")),
        b"",
    )
    if len(head) < 4:
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

    ``field("MSH", 10)`` uses HL7 numbering (MSH-1 is the field separator itself). Values
    returned by :meth:`component`, :meth:`subcomponent` and :meth:`text` are unescaped with
    the message's own encoding characters (MSH-2: a non-default escape character included)
    and its MSH-18 character set (for ``\\Xhh\\``).
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
        self.delimiters = Delimiters(self.field_sep, *enc)
        self.segments: list[list[str]] = []
        for seg in segs:
            parts = seg.split(self.field_sep)
            if seg.startswith("MSH"):
                parts = ["MSH", self.field_sep, *parts[1:]]
            self.segments.append(parts)
        charset = self.field("MSH", 18).split(self.repetition_sep)[0].strip().upper()
        self.charset = _CHARSETS.get(charset, "utf-8")

    def all(self, name: str) -> list[list[str]]:
        return [s for s in self.segments if s[0] == name]

    def field(self, seg: str, index: int, occurrence: int = 0) -> str:
        """The raw (escaped) value of a field, all its repetitions."""
        found = self.all(seg)
        if len(found) <= occurrence or len(found[occurrence]) <= index:
            return ""
        return found[occurrence][index]

    def text(self, value: str) -> str:
        """A raw value unescaped with this message's delimiters and character set."""
        return unescape(value, self.delimiters, self.charset)

    def repetitions(self, seg: str, index: int, occurrence: int = 0) -> list[list[str]]:
        """Each repetition of a field as its raw (escaped) components."""
        value = self.field(seg, index, occurrence)
        if not value:
            return []
        return [rep.split(self.component_sep) for rep in value.split(self.repetition_sep)]

    def component(self, seg: str, index: int, comp: int = 1, occurrence: int = 0) -> str:
        """First repetition's component ``comp`` (1-based), unescaped."""
        value = self.field(seg, index, occurrence).split(self.repetition_sep)[0]
        parts = value.split(self.component_sep)
        return self.text(parts[comp - 1]) if len(parts) >= comp else ""

    def subcomponent(self, seg: str, index: int, comp: int, sub: int, occurrence: int = 0) -> str:
        """First repetition's subcomponent ``comp``.``sub`` (1-based), unescaped."""
        value = self.field(seg, index, occurrence).split(self.repetition_sep)[0]
        parts = value.split(self.component_sep)
        if len(parts) < comp:
            return ""
        subs = parts[comp - 1].split(self.subcomponent_sep)
        return self.text(subs[sub - 1]) if len(subs) >= sub else ""


#: batch envelope segments (HL7 v2.5.1 chapter 2.10.3): file header/trailer, batch header/trailer
BATCH_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")


@dataclass(frozen=True)
class Batch:
    """The messages of one received frame: a single message (``wrapped`` False), or the
    messages of a batch in order, with what the answer batch echoes: the file's and the
    batch's control ids (FHS-11 / BHS-11) and the sender (BHS-3 / BHS-4, else FHS-3/-4)."""

    messages: tuple[str, ...]
    wrapped: bool = False
    file: bool = False  # an FHS/FTS file envelope around the batch
    file_control_id: str = ""
    batch_control_id: str = ""
    sending_application: str = ""
    sending_facility: str = ""


def _header_field(seg: str, index: int) -> str:
    """Field ``index`` (HL7 numbering, FHS-1/BHS-1 being the separator) of a header
    segment, component 1, unescaped with the header's own delimiters."""
    if len(seg) < 8:
        return ""
    sep, enc = seg[3], seg[4:8]
    parts = seg.split(sep)
    if len(parts) < index:
        return ""
    value = parts[index - 1].split(enc[1])[0].split(enc[0])[0]
    return unescape(value, Delimiters(sep, *enc)).strip()


def split_batch(text: str) -> Batch:
    """A decoded frame as its messages. Without FHS/BHS the frame is one message, returned as
    it is; a batch is split at each MSH and its envelope segments dropped (each message's
    segments joined by ``\\r``). A batch may hold no message at all."""
    body = text.lstrip("\ufeff").strip("\r\n \x0b\x1c")
    if not body.startswith(("FHS", "BHS")):
        return Batch(messages=(text,))
    messages: list[list[str]] = []
    headers: dict[str, str] = {}
    for seg in re.split(r"\r\n|\r|\n", body):
        if not seg.strip():
            continue
        name = seg[:3]
        if name in ("FHS", "BHS"):
            headers.setdefault(name, seg)
        elif name in BATCH_SEGMENTS:
            continue
        elif name == "MSH":
            messages.append([seg])
        elif messages:
            messages[-1].append(seg)
        # a segment before the first MSH belongs to no message: the message check refuses
        # nothing it never sees, so it is dropped with the envelope
    bhs, fhs = headers.get("BHS", ""), headers.get("FHS", "")
    sender = bhs or fhs
    return Batch(
        messages=tuple("\r".join(m) for m in messages),
        wrapped=True,
        file=bool(fhs),
        file_control_id=_header_field(fhs, 11)[:20] if fhs else "",
        batch_control_id=_header_field(bhs, 11)[:20] if bhs else "",
        sending_application=_header_field(sender, 3)[:64],
        sending_facility=_header_field(sender, 4)[:64],
    )


def wrap_batch(batch: Batch, answers: list[str], *, now: datetime) -> str:
    """The answers to a batch's messages as a batch of their own (BHS-12 / FHS-12 name the
    received batch / file, BTS-1 / FTS-1 count the messages / batches)."""
    ts = hl7_ts(now)
    ours = control_id("batch\x1f" + batch.file_control_id + "\x1f" + batch.batch_control_id + "\x1f" + ts)
    to = (escape(batch.sending_application), escape(batch.sending_facility))
    head = "|".join(("^~\\&", SENDING_APPLICATION, SENDING_APPLICATION, *to, ts, "", "", "", ours))
    bhs = f"BHS|{head}|{escape(batch.batch_control_id)}"
    segments = [bhs, *(s for a in answers for s in re.split(r"\r\n|\r|\n", a.strip("\r\n")) if s),
                f"BTS|{len(answers)}"]
    if batch.file:
        segments = [f"FHS|{head}|{escape(batch.file_control_id)}", *segments, "FTS|1"]
    return "\r".join(segments)
