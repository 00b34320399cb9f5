"""The dead-letter record: a raw input that could not become events, kept with the
reason so that nothing is silently dropped and an operator can re-drive it."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AwareDatetime

from schemas.base import Frozen, Sealed

Stage = Literal["parse", "validate", "map", "deliver", "inbound", "project", "quarantine"]
#: which kind of outside system a dead letter came from (its topic: ``<prefix>.deadletter.<family>``)
SourceFamily = Literal["cad", "cases", "ehr", "hub", "quarantine"]


class DeadLetter(Frozen):
    """``raw`` is sealed with the hub's dead-letter key whenever the input may carry PHI
    (every CAD, case and EHR payload does); ``raw_clear`` only for PHI-free input.
    ``id`` is deterministic over (source, record ref, raw bytes) so a re-read of the
    same bad row is one dead letter, not two. ``profile`` names the mapper configuration
    that rejected the record, recorded by the connector: a reference ``<name>@sha256:<hex>``
    to a CAD record's exact profile (a bundled or YAML-path profile with the county's
    overrides) or a case record's mapping (``cases@sha256:<hex>``: source, person namespace,
    agency); in CAD dead letters written before references, a plain profile name."""

    id: str
    source: str  # e.g. "cad/seattle", "cases/acme", "ehr/mllp"
    source_family: SourceFamily
    record_ref: str  # file:line, cursor, message control id ...
    stage: Stage
    reason: str
    profile: str | None = None
    raw: Sealed | None = None
    raw_clear: str | None = None
    at: AwareDatetime

    @property
    def profile_name(self) -> str | None:
        """The profile's name: ``profile`` up to its ``@`` (the whole of a plain name)."""
        return None if self.profile is None else self.profile.split("@", 1)[0]


def deadletter_id(source: str, record_ref: str, raw: bytes) -> str:
    h = hashlib.sha256()
    for part in (source.encode(), record_ref.encode(), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return "dl_" + h.hexdigest()[:32]
