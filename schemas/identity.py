"""Identity resolution facts: two pseudonyms are (or are no longer) the same person.
Partition key: the surviving pseudonym ``person``."""

from __future__ import annotations

from schemas.base import EventData, Pseudonym, Timestamp, register


class _LinkEvent(EventData):
    family = "identity"
    key_field = "person"
    person: Pseudonym
    other: Pseudonym
    at: Timestamp
    method: str = "manual"
    actor: str


@register
class PersonLinked(_LinkEvent):
    event_type = "identity.person.linked.v1"


@register
class PersonUnlinked(_LinkEvent):
    event_type = "identity.person.unlinked.v1"
