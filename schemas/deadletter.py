"""The dead-letter record: a raw input that could not become events, kept with the
reason so that nothing is silently dropped and an operator can re-drive it."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AwareDatetime

from schemas.base import Frozen, Sealed

Stage = Literal["parse", "validate", "map", "deliver", "inbound", "project"]


class DeadLetter(Frozen):
    """``raw`` is sealed with the hub's dead-letter key whenever the input may carry PHI
    (every CAD, case and EHR payload does); ``raw_clear`` only for PHI-free input.
    ``id`` is deterministic over (source, record ref, raw bytes) so a re-read of the
    same bad row is one dead letter, not two."""

    id: str
    source: str  # e.g. "cad/seattle", "cases/acme", "ehr/mllp"
    source_family: Literal["cad", "cases", "ehr", "hub"]
    record_ref: str  # file:line, cursor, message control id ...
    stage: Stage
    reason: str
    profile: str | None = None
    raw: Sealed | None = None
    raw_clear: str | None = None
    at: AwareDatetime


def deadletter_id(source: str, record_ref: str, raw: bytes) -> str:
    h = hashlib.sha256()
    for part in (source.encode(), record_ref.encode(), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return "dl_" + h.hexdigest()[:32]
