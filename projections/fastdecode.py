"""The rebuild's fast read of a fact record: the parts of its envelope, decoded with orjson
into plain values, for records in the exact shape the hub writes — and the reference path
(:func:`hub.kernel.log.decode_record`, the pydantic envelope) for every other record.

:func:`record_parts` accepts a record's value only when the pydantic
:class:`~schemas.envelope.Envelope` certainly accepts it too and reads the same values from
it: a JSON object whose keys are envelope fields (every required one present, no other), every
text field a JSON string, the two literals at their only value, ``data`` an object, and both
times in the RFC 3339 form pydantic writes (``YYYY-MM-DDTHH:MM:SS[.ffffff]`` then ``Z`` or
``±HH:MM``), which :meth:`datetime.fromisoformat` reads to the same instant. Anything else
(a number as a time, a space for the ``T``, an unknown field, bytes orjson refuses) goes
through the pydantic model, so a record is unreadable here exactly when it is unreadable
for the live projector. The property tests check the two paths agree on valid and broken
envelopes alike.

The parts are those of the current version of the event (:meth:`Envelope.current`):
:class:`RecordParts` with the upcast type and data.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from hub.kernel.log import decode_record
from schemas.upcasters import UPCASTERS, upcast

_FIELDS = frozenset({
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
    "correlationid", "causationid", "recordedat", "partitionkey", "data",
})
_REQUIRED = frozenset({"id", "source", "type", "subject", "time", "dataschema", "recordedat", "partitionkey",
                       "data"})
_JSON = "application/json"
_TEXT = ("id", "source", "type", "subject", "dataschema", "partitionkey")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")


class RecordParts(NamedTuple):
    """What the rebuild reads of one envelope (current version of its type)."""

    event_id: str
    event_type: str
    source: str
    time: datetime
    recorded_at: datetime
    data: dict[str, Any]
    raw_is_current: bool  # the record's bytes carry exactly these parts (no upcast, fast path)


def _time(value: Any) -> datetime | None:
    if type(value) is not str or not _TIME.match(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # 25 o'clock, a 24-hour offset: pydantic decides
        return None


def fast_parts(value: bytes | None) -> RecordParts | None:
    """The parts of an envelope in the hub's own shape, without pydantic; None when the
    record needs the reference path (see the module docstring). Raises ``ValueError`` from
    an upcaster, as the reference does."""
    if value is None:
        return None
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not _REQUIRED <= d.keys() <= _FIELDS:
        return None
    if d.get("specversion", "1.0") != "1.0" or d.get("datacontenttype", _JSON) != _JSON:
        return None
    for name in _TEXT:
        if type(d[name]) is not str:
            return None
    for name in ("correlationid", "causationid"):
        v = d.get(name)
        if v is not None and type(v) is not str:
            return None
    data = d["data"]
    if type(data) is not dict:
        return None
    at, recorded = _time(d["time"]), _time(d["recordedat"])
    if at is None or recorded is None:
        return None
    event_type = d["type"]
    if event_type in UPCASTERS:
        current, data = upcast(event_type, data)
        return RecordParts(d["id"], current, d["source"], at, recorded, data, False)
    return RecordParts(d["id"], event_type, d["source"], at, recorded, data, True)


def record_parts(rec: Any) -> RecordParts:
    """The parts of a consumed fact record (``topic``, ``partition``, ``offset``, ``value``):
    :func:`fast_parts`, else the pydantic envelope. Raises
    :class:`~hub.kernel.log.CorruptRecordError` for a record that is not a valid envelope
    (also when an upcaster refuses its data), like :func:`~hub.kernel.log.decode_record`."""
    try:
        parts = fast_parts(rec.value)
    except Exception:  # an upcaster refused the data: the reference path decides and says why
        parts = None
    if parts is not None:
        return parts
    env = decode_record(rec).envelope
    return RecordParts(env.id, env.type, env.source, env.time, env.recordedat, env.data, False)
