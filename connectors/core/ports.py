"""What the runner needs from the outside world (ports; adapters live elsewhere).

- :class:`LogPort` — the event log: ``append`` returns the new events (in input order) and
  the ones refused as already present (deterministic ids; a repeat inside the batch is
  refused too); an envelope of an unknown event type fails the whole batch with
  ``UnknownEventTypeError`` before anything is written. ``dead_letters`` records a batch of
  dead letters and says, per letter, whether it was new (a repeat inside the batch is
  not). ``hub.kernel.log.EventLog`` satisfies it.
- :class:`CursorStore` — durable cursor per source, committed only after the append of
  everything read before it was acknowledged.
- :class:`RevisionStore` — remembers the first revision seen of each source record key.
- :class:`DeliveryStore` — webhook deliveries already accepted (with their body digest).

Each port's behaviour is one contract (``tests/contracts/ports.py``) that both the real
adapters and the in-memory fakes of :mod:`connectors.core.memory` pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from connectors.core.records import RevisionKey
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


class AppendOutcome(Protocol):
    appended: Any
    duplicates: Any


class LogPort(Protocol):
    async def append(self, envelopes: Sequence[Envelope]) -> AppendOutcome: ...

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> list[bool]: ...


class CursorStore(Protocol):
    """``save`` also records the newest record time seen (kept monotonic: an older value
    never replaces a newer one); ``newest`` reads it back after a restart."""

    async def load(self, source: str) -> Any | None: ...

    async def save(self, source: str, cursor: Any, newest: datetime | None = None) -> None: ...

    async def newest(self, source: str) -> datetime | None: ...


class RevisionStore(Protocol):
    async def claim(self, source: str, keys: Sequence[RevisionKey]) -> dict[str, str]:
        """Record ``revision`` as the first revision of each ``key`` not seen before and
        return, for every key, the first revision on record."""
        ...


@dataclass(frozen=True)
class AcceptedDelivery:
    """A webhook delivery already accepted: the SHA-256 of its body (``None`` for rows
    recorded before digests were kept), how many events it appended, when."""

    body_sha256: str | None
    events: int
    received_at: datetime | None = None


class DeliveryStore(Protocol):
    async def lookup(self, receiver: str, delivery_id: str) -> AcceptedDelivery | None: ...

    async def record(self, receiver: str, delivery_id: str, events: int, body_sha256: str) -> bool:
        """Record an accepted delivery; False when the id was already recorded."""
        ...


def count_of(value: Any) -> int:
    """``AppendResult`` fields may be counts or collections of ids; both count."""
    if isinstance(value, int):
        return value
    return len(value)
