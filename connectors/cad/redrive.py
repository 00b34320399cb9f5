"""Re-driving CAD dead letters after a profile fix (``hub deadletters retry``).

The raw payload is what the connector kept: a CSV row (no header: read with the
profile's columns), an open-data JSON row, or an EIDO document. It is mapped again with
the profile the dead letter names, as it is now: a recorded profile reference resolves to
the component's own profile — its bundled or YAML-path base, current content, with the
county's overrides (see :mod:`connectors.cad.used_profile`). Event ids are deterministic,
so a re-driven record that meanwhile arrived again is appended once. Raises with the
reason when it still cannot be mapped.
"""

from __future__ import annotations

import csv
import io
import json

import asyncpg

from connectors.cad.eido import eido_record
from connectors.cad.ingest import mapper_for
from connectors.cad.profile import Profile
from connectors.cad.used_profile import resolve_profile
from connectors.core.recorded import MapperConfigStore
from connectors.core.records import Exclusion, Mapped, RawRecord
from hub.kernel.deadletters import ValueFreeError
from hub.kernel.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


def raw_to_record(dl: DeadLetter, raw: bytes, profile: Profile) -> RawRecord:
    """The dead letter's raw payload as a record of ``profile``'s layout (pure)."""
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


def map_again(dl: DeadLetter, raw: bytes, profile: Profile) -> list[Envelope]:
    """The events ``raw`` maps to with ``profile`` under the dead letter's source (pure);
    an excluded record gives none; raises :class:`ValueFreeError` when it is still rejected."""
    record = raw_to_record(dl, raw, profile)
    if record.problem:
        raise ValueFreeError(record.problem)
    result = mapper_for(profile, dl.source).map(record, None)
    if isinstance(result, Mapped):
        return list(result.events)
    if isinstance(result, Exclusion):
        return []
    raise ValueFreeError(f"{result.stage}: {result.reason}")


async def redrive_cad(
    dl: DeadLetter, raw: bytes, *, pool: asyncpg.Pool, settings: Settings
) -> list[Envelope]:
    """The redriver of the ``cad`` family: resolve the dead letter's profile, map again."""
    if not dl.profile:
        raise ValueFreeError("dead letter names no CAD profile")
    profile = await resolve_profile(MapperConfigStore(pool, settings.core_schema), dl.profile)
    return map_again(dl, raw, profile)
