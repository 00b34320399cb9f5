"""The envelope every record in a fact topic carries: CloudEvents 1.0 attributes plus the
hub's extensions (correlation, causation, recorded-at, partition key).

Invariants:
- ``id`` is deterministic: uuid5 over (source system, source record id, revision, fact
  kind), so re-reading a feed yields the same id and the log index refuses the copy;
- ``subject`` and ``partitionkey`` are an incident id or a person pseudonym, never PHI;
- ``data`` is the JSON form of the payload; :meth:`Envelope.payload` validates it into the
  current model, upcasting older versions on read (the log is never rewritten).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.base import EventData, event_class
from schemas.upcasters import upcast

ID_NAMESPACE = uuid.UUID("6f1c3e1a-3b7e-5c55-9d0e-6b8f2a1c9e42")
SCHEMA_URN = "urn:coresponder-hub:schema:"


def deterministic_id(source: str, record_id: str, revision: str | int, fact_kind: str) -> str:
    """Stable event id for one fact derived from one revision of one source record."""
    name = "\x1f".join((source, str(record_id), str(revision), fact_kind))
    return str(uuid.uuid5(ID_NAMESPACE, name))


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
        return self.model_dump_json().encode("utf-8")

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
