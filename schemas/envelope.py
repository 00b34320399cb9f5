"""The envelope every record in a fact topic carries: CloudEvents 1.0 attributes plus the
hub's extensions (correlation, causation, recorded-at, partition key).

Invariants:
- ``id`` is deterministic: uuid5 over (source system, source record id, revision, fact
  kind), so re-reading a feed yields the same id and the log index refuses the copy;
- ``subject`` and ``partitionkey`` are an incident id or a person pseudonym, never PHI;
- ``data`` is the JSON form of the payload; :meth:`Envelope.payload` validates it into the
  current model, upcasting older versions on read (the log is never rewritten);
- :meth:`Envelope.to_bytes` is ``model_dump_json()``; an envelope made by
  :func:`trusted_event` (the fast path of the hub's own mappers) carries those exact bytes,
  built with its fields from the same values (the property tests prove them byte-identical
  to :func:`new_event`'s); the models stay the schema and validate every record on read.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.base import EventData, event_class
from schemas.upcasters import upcast

ID_NAMESPACE = uuid.UUID("6f1c3e1a-3b7e-5c55-9d0e-6b8f2a1c9e42")
SCHEMA_URN = "urn:coresponder-hub:schema:"


_ID_SHA1 = hashlib.sha1(ID_NAMESPACE.bytes, usedforsecurity=False)


def deterministic_id(source: str, record_id: str, revision: str | int, fact_kind: str) -> str:
    """Stable event id for one fact derived from one revision of one source record:
    ``uuid5(ID_NAMESPACE, source ␟ record id ␟ revision ␟ fact kind)`` (RFC 4122), computed
    with hashlib directly (the same digest and bits as :func:`uuid.uuid5`, a third of its
    cost)."""
    name = "\x1f".join((source, str(record_id), str(revision), fact_kind))
    sha = _ID_SHA1.copy()
    sha.update(name.encode("utf-8"))
    b = bytearray(sha.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: where a :func:`trusted_event` envelope keeps its JSON bytes: a key of the instance
#: ``__dict__`` that is no field (pydantic ignores it: dumps, ``==``, ``repr``)
_ENCODED = "_encoded"


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    correlationid: str | None = None
    causationid: str | None = None
    recordedat: AwareDatetime
    partitionkey: str
    data: dict[str, Any]

    @property
    def family(self) -> str:
        return event_class(upcast(self.type, self.data)[0]).family

    def payload(self) -> EventData:
        """The payload as the current version of its event type."""
        current_type, data = upcast(self.type, self.data)
        return event_class(current_type).model_validate(data)

    def current(self) -> Envelope:
        """This envelope with its payload upcast to the current version (ids unchanged)."""
        current_type, data = upcast(self.type, self.data)
        if current_type == self.type:
            return self
        return self.model_copy(
            update={"type": current_type, "data": data, "dataschema": SCHEMA_URN + current_type}
        )

    def to_bytes(self) -> bytes:
        """``model_dump_json()`` as UTF-8 (the bytes a :func:`trusted_event` was built with)."""
        encoded: bytes | None = self.__dict__.get(_ENCODED)
        return encoded if encoded is not None else self.model_dump_json().encode("utf-8")

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Envelope:
        """A copy (``update`` replacing fields); a trusted envelope's bytes are not copied
        (they would no longer be this envelope's)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop(_ENCODED, None)
        return copied

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate(json.loads(raw))


def new_event(
    data: EventData,
    *,
    source: str,
    record_id: str,
    revision: str | int = 0,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    recorded_at: datetime | None = None,
) -> Envelope:
    """Wrap a payload in an envelope with its deterministic id."""
    key = data.partition_key()
    return Envelope(
        id=deterministic_id(source, record_id, revision, data.fact_kind()),
        source=source,
        type=data.event_type,
        subject=key,
        time=data.occurred_at(),
        dataschema=SCHEMA_URN + data.event_type,
        correlationid=correlation_id,
        causationid=causation_id,
        recordedat=recorded_at or datetime.now(UTC),
        partitionkey=key,
        data=data.model_dump(mode="json"),
    )


#: the fields :func:`new_event` sets (the others keep their defaults)
_NEW_EVENT_FIELDS = frozenset(
    {"id", "source", "type", "subject", "time", "dataschema", "correlationid", "causationid",
     "recordedat", "partitionkey", "data"}
)
_set_attr = object.__setattr__


def trusted_event(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    record_id: str,
    revision: str | int,
    key: str,
    time: datetime,
    recorded_at: datetime,
) -> Envelope:
    """The envelope :func:`new_event` makes of the payload whose JSON form (``model_dump(
    mode="json")``, fields in model order) is ``data``, without validating it, with its
    bytes encoded once (orjson) — for the hub's own mappers, whose output the property
    tests prove equal to the models' (same ``data``, byte-identical :meth:`Envelope.to_bytes`).

    Invariants the caller keeps: ``data`` is exactly the payload's JSON form (never changed
    afterwards); ``key`` is its partition key; ``time`` (its occurrence time) and
    ``recorded_at`` are aware UTC datetimes (``datetime.UTC``: encoded ``…Z`` as pydantic
    does)."""
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": deterministic_id(source, record_id, revision, event_type.rsplit(".v", 1)[0]),
        "source": source,
        "type": event_type,
        "subject": key,
        "time": time,
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_URN + event_type,
        "correlationid": None,
        "causationid": None,
        "recordedat": recorded_at,
        "partitionkey": key,
        "data": data,
    }
    encoded = orjson.dumps(fields, option=orjson.OPT_UTC_Z)
    fields[_ENCODED] = encoded
    env = Envelope.__new__(Envelope)
    _set_attr(env, "__dict__", fields)
    _set_attr(env, "__pydantic_fields_set__", set(_NEW_EVENT_FIELDS))
    _set_attr(env, "__pydantic_extra__", None)
    _set_attr(env, "__pydantic_private__", None)
    return env
