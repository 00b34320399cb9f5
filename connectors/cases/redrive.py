"""Re-driving case-record dead letters (``hub deadletters retry``): the sealed raw JSON
record is mapped again with the runtime's pseudonym key and keyring, so a contact note is
sealed with the person's key exactly as on first ingest (and dropped, never stored clear,
only when the person's key was destroyed). As in the source runner, the person's key is
resolved before the pure mapping (:func:`connectors.core.runner.bind_keys`); a key-store
outage raises :class:`hub.kernel.errors.ServiceUnavailable` and the letter stays open."""

from __future__ import annotations

import json

from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.records import Mapped
from connectors.core.runner import bind_keys
from hub.kernel.crypto import Keyring
from hub.kernel.deadletters import ValueFreeError
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


async def redrive_case(
    dl: DeadLetter, raw: bytes, *, keyring: Keyring, pseudonym_key: bytes
) -> list[Envelope]:
    """The redriver of the ``cases`` family (keys resolved before mapping, so an outage
    leaves the dead letter open)."""
    record = case_record(json.loads(raw), dl.record_ref, raw)
    mapper = await bind_keys(CaseMapper(dl.source, pseudonym_key, keyring), [record])
    result = mapper.map(record)
    if isinstance(result, Mapped):
        return list(result.events)
    raise ValueFreeError(getattr(result, "reason", "not mappable"))
