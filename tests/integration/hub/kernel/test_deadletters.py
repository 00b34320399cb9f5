"""Dead letters end to end: re-drive after a mapping fix appends exactly once; the CLI shows
payloads masked and audits every reveal."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from hub.kernel.deadletters import DeadLetterStore, ValueFreeError, build_dead_letter, redrive
from hub.kernel.runtime import Runtime
from schemas.dispatch import UnitDispatched
from schemas.envelope import new_event
from tests.integration.hubcli import run_hub


def mapper(dl, raw: bytes):
    incident, at = raw.decode().split(",")
    return [new_event(UnitDispatched(incident_id=incident, at=datetime.fromisoformat(at)),
                      source=dl.source, record_id=dl.record_ref)]


def broken(dl, raw: bytes):
    raise ValueFreeError("still cannot map column 2")  # a reason composed without input values


def leaky(dl, raw: bytes):
    raise ValueError(f"cannot map {raw.decode()}")  # quotes the input: must never be shown


async def test_redrive_appends_once_and_marks_redriven(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:8]
    raw = f"sea:{tag},2024-02-01T10:00:00+00:00".encode()
    dl = build_dead_letter(source="cad/redrive", source_family="cad", record_ref=f"{tag}.csv:2",
                           stage="map", reason="unknown unit", raw=raw, sealer=log_rt.deadletter_sealer)
    assert await log_rt.log.dead_letters([dl]) == [True]
    store = DeadLetterStore(log_rt.pool, log_rt.settings.core_schema)

    failed = await redrive(log_rt, await store.get(dl.id), {"cad/redrive": broken})
    assert not failed.ok and "still cannot map" in failed.error
    row = await store.get(dl.id)
    assert row.status == "open" and row.attempts == 1 and "still cannot map" in row.last_error
    withheld = await redrive(log_rt, row, {"cad/redrive": leaky})
    assert not withheld.ok and withheld.error.startswith("ValueError at ") and tag not in withheld.error
    row = await store.get(dl.id)
    assert row.attempts == 2 and tag not in row.last_error

    # the mapping is fixed: the record now maps to one event
    ok = await redrive(log_rt, row, {"cad": mapper})
    assert ok.ok and ok.appended == 1 and ok.duplicates == 0
    row = await store.get(dl.id)
    assert row.status == "redriven" and row.redriven_events == 1
    again = await redrive(log_rt, row, {"cad": mapper})
    assert again.ok and again.appended == 0  # left alone
    assert (await log_rt.log.append(mapper(dl, raw))).duplicates  # exactly once in the log
    assert [r.record.id for r in await store.list(source="cad/redrive", status="redriven")] == [dl.id]


async def test_cli_shows_masked_and_audits_reveals(log_rt: Runtime) -> None:
    raw = b"Jane Doe,DOB 1980-01-02"
    dl = build_dead_letter(source="cad/cli", source_family="cad", record_ref=uuid.uuid4().hex, stage="parse",
                           reason="bad row", raw=raw, sealer=log_rt.deadletter_sealer,
                           at=datetime.now(UTC))
    assert await log_rt.log.dead_letters([dl]) == [True]
    listed = await asyncio.to_thread(
        run_hub, log_rt.settings, "deadletters", "list", "--json", "--source", "cad/cli"
    )
    assert listed.returncode == 0, listed.stderr
    assert [i["id"] for i in json.loads(listed.stdout)["items"]] == [dl.id]
    assert "Jane" not in listed.stdout

    shown = await asyncio.to_thread(run_hub, log_rt.settings, "deadletters", "show", dl.id, "--json")
    assert shown.returncode == 0 and "Jane" not in shown.stdout
    assert json.loads(shown.stdout)["raw"] == "xxxx xxx,xxx 9999-99-99"

    refused = await asyncio.to_thread(run_hub, log_rt.settings, "deadletters", "show", dl.id, "--reveal")
    assert refused.returncode != 0 and "--reason" in refused.stderr
    revealed = await asyncio.to_thread(
        run_hub, log_rt.settings, "deadletters", "show", dl.id, "--json", "--reveal",
        "--actor", "ops-1", "--reason", "fix mapping"
    )
    assert json.loads(revealed.stdout)["raw"] == raw.decode()
    audit = await DeadLetterStore(log_rt.pool, log_rt.settings.core_schema).accesses(dl.id)
    assert [(a["actor"], a["action"], a["reason"]) for a in audit][-1] == ("ops-1", "reveal", "fix mapping")
