"""Re-driving case-record dead letters (``hub deadletters retry``): the sealed raw JSON
record is mapped again with the component's recorded mapping and the runtime's keys.

- The mapping is the one the component mapped with live: its dead letters name the
  recorded :class:`connectors.cases.mapping.CaseMapping` (``cases@sha256:…``, resolved from
  ``<core>.mapper_configs``), so a re-driven record gets the same person pseudonym (the
  configured ``namespace``) and incident agency as the same record read live. A dead
  letter without a ref (written before refs) is mapped with the defaults under its source.
- A contact note is sealed with the person's key exactly as on first ingest (and dropped,
  never stored clear, only when the person's key was destroyed). As in the source runner,
  the person's key is resolved before the pure mapping
  (:func:`connectors.core.runner.bind_keys`); a key-store outage raises
  :class:`hub.kernel.errors.ServiceUnavailable` and the letter stays open.
"""

from __future__ import annotations

import json

import asyncpg

from connectors.cases.mapping import CaseMapping, case_record
from connectors.core.recorded import MapperConfigStore, is_config_ref
from connectors.core.records import Mapped
from connectors.core.runner import bind_keys
from hub.kernel.crypto import Keyring
from hub.kernel.custom_fields import load_definitions
from hub.kernel.deadletters import ValueFreeError
from hub.kernel.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.envelope import Envelope


async def resolve_mapping(store: MapperConfigStore, dl: DeadLetter) -> CaseMapping:
    """The mapping to re-drive ``dl`` with: the recorded one its ref names, or the defaults
    under its source when it names none."""
    if dl.profile is None:
        return CaseMapping(source=dl.source)
    if not is_config_ref(dl.profile):
        raise ValueFreeError("the dead letter's profile is not a recorded case mapping reference")
    mapping = await store.get(CaseMapping, dl.profile)
    if mapping is None:
        raise ValueFreeError(f"case mapping {dl.profile} is not recorded in this deployment")
    return mapping


async def redrive_case(
    dl: DeadLetter,
    raw: bytes,
    *,
    keyring: Keyring,
    pseudonym_key: bytes,
    pool: asyncpg.Pool,
    settings: Settings,
) -> list[Envelope]:
    """The redriver of the ``cases`` family (mapping resolved and keys bound before
    mapping, so an outage leaves the dead letter open)."""
    mapping = await resolve_mapping(MapperConfigStore(pool, settings.core_schema), dl)
    record = case_record(json.loads(raw), dl.record_ref, raw)
    fields = load_definitions(settings.custom.definitions).from_source("case")  # as the file is now
    mapper = await bind_keys(mapping.mapper(pseudonym_key, keyring, fields), [record])
    result = mapper.map(record)
    if isinstance(result, Mapped):
        return list(result.events)
    raise ValueFreeError(getattr(result, "reason", "not mappable"))
