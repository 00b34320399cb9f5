"""In-memory implementations of the ports (unit tests, dry runs, the demo's fakes).

They keep the same contracts as the real adapters (``tests/contracts/ports.py``, run against
both): :class:`MemoryLog` refuses an event id it already holds, like the real log's index,
and an envelope of an unknown event type before storing anything."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.core.ports import AcceptedDelivery
from connectors.core.records import RevisionKey
from hub.kernel.errors import ServiceUnavailable
from hub.kernel.log import family_of
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


@dataclass
class MemoryAppendResult:
    """Like ``hub.kernel.log.AppendResult``: the new envelopes and the refused ones."""

    appended: list[Envelope]
    duplicates: list[Envelope]


@dataclass
class MemoryLog:
    events: list[Envelope] = field(default_factory=list)
    letters: dict[str, DeadLetter] = field(default_factory=dict)  # dead letters by id
    fail_appends: int = 0  # the next N appends raise ServiceUnavailable (an outage, as the real log)

    def __post_init__(self) -> None:
        self._ids: set[str] = {e.id for e in self.events}

    async def append(self, envelopes: Sequence[Envelope]) -> MemoryAppendResult:
        if self.fail_appends > 0:
            self.fail_appends -= 1
            raise ServiceUnavailable("event log unavailable (simulated)")
        for env in envelopes:  # like EventLog: an unknown type fails the batch before any write
            family_of(env)
        new: list[Envelope] = []
        dup: list[Envelope] = []
        for env in envelopes:
            if env.id in self._ids:
                dup.append(env)
            else:
                self._ids.add(env.id)
                self.events.append(env)
                new.append(env)
        return MemoryAppendResult(new, dup)

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> list[bool]:
        """Like ``EventLog.dead_letters``: True per letter whose id was not stored yet
        (a repeat inside the batch is False)."""
        new: list[bool] = []
        for letter in letters:
            new.append(letter.id not in self.letters)
            self.letters.setdefault(letter.id, letter)
        return new

    def of_type(self, prefix: str) -> list[Envelope]:
        return [e for e in self.events if e.type.startswith(prefix)]


@dataclass
class MemoryCursorStore:
    cursors: dict[str, Any] = field(default_factory=dict)
    newests: dict[str, datetime] = field(default_factory=dict)

    async def load(self, source: str) -> Any | None:
        return copy.deepcopy(self.cursors.get(source))

    async def save(self, source: str, cursor: Any, newest: datetime | None = None) -> None:
        self.cursors[source] = copy.deepcopy(cursor)
        if newest is not None and (source not in self.newests or newest > self.newests[source]):
            self.newests[source] = newest

    async def newest(self, source: str) -> datetime | None:
        return self.newests.get(source)


@dataclass
class MemoryRevisionStore:
    firsts: dict[tuple[str, str], str] = field(default_factory=dict)

    async def claim(self, source: str, keys: Sequence[RevisionKey]) -> dict[str, str]:
        out: dict[str, str] = {}
        for k in keys:
            out[k.key] = self.firsts.setdefault((source, k.key), k.revision)
        return out


@dataclass
class MemoryDeliveryStore:
    deliveries: dict[tuple[str, str], AcceptedDelivery] = field(default_factory=dict)

    async def lookup(self, receiver: str, delivery_id: str) -> AcceptedDelivery | None:
        return self.deliveries.get((receiver, delivery_id))

    async def record(self, receiver: str, delivery_id: str, events: int, body_sha256: str) -> bool:
        if (receiver, delivery_id) in self.deliveries:
            return False
        self.deliveries[(receiver, delivery_id)] = AcceptedDelivery(body_sha256, events, datetime.now(UTC))
        return True
