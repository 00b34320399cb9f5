"""Re-driving case-record dead letters (``hub deadletters retry``): the sealed raw JSON
record is mapped again; pseudonyms use the hub's key. Contact notes are not re-sealed on
re-drive (no keyring here): they are dropped, never stored clear."""

from __future__ import annotations

import json

from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.records import Mapped
from hub.deadletters import ValueFreeError, register_redriver
from hub.keys import secret_bytes
from hub.settings import get_settings
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


@register_redriver("cases")
def redrive_case(dl: DeadLetter, raw: bytes) -> list[Envelope]:
    mapper = CaseMapper(dl.source, secret_bytes(get_settings(), "pseudonym.key"))
    result = mapper.map(case_record(json.loads(raw), dl.record_ref, raw))
    if isinstance(result, Mapped):
        return list(result.events)
    raise ValueFreeError(getattr(result, "reason", "not mappable"))
