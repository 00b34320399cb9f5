"""Issue 13 item 1, sealed fields: a case connector whose PostgreSQL connection dies at the
event index's offset ``UPDATE`` (after Kafka acknowledged the batch) maps the same record
again on its retry; the sealed contact note comes out byte-identical, so the two copies in
the log are an orphan copy and its indexed copy, and ``hub verify`` passes."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.records import Mapped
from hub.kernel.crypto import unseal
from hub.kernel.errors import ServiceUnavailable
from hub.kernel.runtime import Runtime
from hub.kernel.verify import run_verify
from schemas.envelope import Envelope
from tests.integration.cutpool import cut_log, index_statement
from tests.integration.hubcli import run_hub

RECORD = {
    "record_id": "c-crash-1", "record_type": "contact_logged", "case_id": "case-crash",
    "person": {"system": "mrn:test", "id": "crash-person"}, "occurred_at": "2024-06-01T08:00:00Z",
    "contact_kind": "phone", "note": "talked about housing", "version": 3,
}


async def map_once(rt: Runtime) -> list[Envelope]:
    """One pass of the connector over the record: resolve the keys, map (seals the note)."""
    mapper = CaseMapper("cases/test", rt.pseudonym_key, rt.keyring, default_namespace="mrn:test")
    record = case_record(RECORD, "c-crash-1", json.dumps(RECORD).encode())
    keys = await rt.keyring.resolve(mapper.persons_to_seal(record))
    result = mapper.with_keyring(keys).map(record)
    assert isinstance(result, Mapped)
    return list(result.events)


async def test_a_cut_after_the_ack_leaves_an_identical_sealed_copy(log_rt: Runtime) -> None:
    rt = log_rt
    async with cut_log(rt) as cut:
        cut_at = cut.proxy.arm(index_statement(rt.settings.core_schema))
        first = await map_once(rt)
        with pytest.raises(ServiceUnavailable):
            await cut.log.append(first)
        assert cut_at.is_set()
    retry = await map_once(rt)  # the connector re-pulls the record and maps it again
    assert [e.id for e in retry] == [e.id for e in first]
    assert retry[0].data["note"] == first[0].data["note"]  # the sealed note: byte-identical
    assert (await rt.log.append(retry)).appended

    copies = [e async for e in rt.log.read() if e.envelope.id == first[0].id]
    assert len(copies) == 2
    note = copies[1].envelope.payload().note  # type: ignore[attr-defined]
    assert unseal(await rt.keyring.resolve_ids([note.kid]), note) == {"note": "talked about housing"}
    report = await run_verify(rt.settings, rt.pool, rt.kafka, store=False)
    assert report.ok, [b.describe() for b in report.breaks]
    assert [o.event_id for o in report.orphan_copies] == [first[0].id]
    cli = await asyncio.to_thread(run_hub, rt.settings, "verify")
    assert cli.returncode == 0, cli.stdout + cli.stderr
