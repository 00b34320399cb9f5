"""Re-driving CAD dead letters after a profile fix (``hub deadletters retry``).

The raw payload is what the connector kept: a CSV row (no header: read with the
profile's columns), an open-data JSON row, or an EIDO document. It is mapped again with
the *current* profile; event ids are deterministic, so a re-driven record that meanwhile
arrived again is appended once. Raises with the reason when it still cannot be mapped.
"""

from __future__ import annotations

import csv
import io
import json

from connectors.cad.eido import eido_record
from connectors.cad.ingest import mapper_for
from connectors.cad.profile import load_profile
from connectors.core.records import Exclusion, Mapped, RawRecord
from hub.kernel.deadletters import ValueFreeError, register_redriver
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


def raw_to_record(dl: DeadLetter, raw: bytes) -> RawRecord:
    profile = load_profile(dl.profile or "generic")
    if profile.format == "eido":
        return eido_record(raw, dl.record_ref)
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        return RawRecord(dl.record_ref, raw, json.loads(text))
    (row,) = list(csv.reader(io.StringIO(text)))
    if len(row) != len(profile.columns):
        return RawRecord(
            dl.record_ref,
            raw,
            problem=f"wrong column count: expected {len(profile.columns)}, found {len(row)}",
        )
    return RawRecord(dl.record_ref, raw, dict(zip(profile.columns, row, strict=True)))


@register_redriver("cad")
def redrive_cad(dl: DeadLetter, raw: bytes) -> list[Envelope]:
    if not dl.profile:
        raise ValueFreeError("dead letter names no CAD profile")
    profile = load_profile(dl.profile)
    record = raw_to_record(dl, raw)
    if record.problem:
        raise ValueFreeError(record.problem)
    result = mapper_for(profile, dl.source).map(record, None)
    if isinstance(result, Mapped):
        return list(result.events)
    if isinstance(result, Exclusion):
        return []
    raise ValueFreeError(f"{result.stage}: {result.reason}")
