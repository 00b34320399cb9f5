"""Building dead letters for inbound records: the raw bytes are sealed with the hub's
dead-letter key (every CAD / case payload may carry PHI; :class:`hub.keystore.DeadLetterSealer`
opens them for an audited operator), the reason stays readable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hub.keystore import DeadLetterSealer
from schemas.base import Sealed
from schemas.deadletter import DeadLetter, Stage, deadletter_id

Sealer = Callable[[bytes], Sealed]


def raw_sealer(key: bytes) -> Sealer:
    """A function sealing raw bytes with a dead-letter key (the runtime's own
    ``rt.deadletter_sealer.seal`` is the same thing built from the key file)."""
    return DeadLetterSealer(key).seal


def make_dead_letter(
    *,
    source: str,
    source_family: str,
    record_ref: str,
    stage: Stage,
    reason: str,
    raw: bytes,
    sealer: Sealer,
    profile: str | None = None,
    at: datetime | None = None,
) -> DeadLetter:
    return DeadLetter(
        id=deadletter_id(source, record_ref, raw),
        source=source,
        source_family=source_family,  # type: ignore[arg-type]
        record_ref=record_ref,
        stage=stage,
        reason=reason,
        profile=profile,
        raw=sealer(raw),
        at=at or datetime.now(UTC),
    )
