"""``hub timeline`` is a person-level read like the API's: it needs a purpose, appends one
row per read to the same append-only access log (who = operator at the CLI) before printing,
and renders sealed fields with the API's renderer (no ciphertext ever printed)."""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hub.bootstrap import open_runtime
from hub.kernel.audit import AccessLog
from hub.kernel.crypto import seal
from hub.kernel.identity import pseudonymize
from hub.kernel.settings import Settings
from projections.projector import project
from schemas.case import CaseOpened, ContactLogged
from schemas.envelope import new_event
from tests.integration.hubcli import run_hub

pytestmark = pytest.mark.integration

NOTE = "Jane Quimby, DOB 1984-07-19, talked about housing"
T0 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


async def _person_with_sealed_note(settings: Settings) -> str:
    async with open_runtime(settings) as rt:
        person = pseudonymize(rt.pseudonym_key, "mpi:cli-test", uuid.uuid4().hex)
        tag = person[-8:]
        await rt.log.append([
            new_event(CaseOpened(case_id=f"cli-{tag}", person=person, at=T0, program="coresp-1"),
                      source="test/timeline-cli", record_id=f"open-{tag}"),
            new_event(ContactLogged(case_id=f"cli-{tag}", person=person, at=T0 + timedelta(hours=1),
                                    note=seal(rt.keyring, person, {"note": NOTE}, context="test/fact/note")),
                      source="test/timeline-cli", record_id=f"contact-{tag}"),
        ])
        await project(rt, until_caught_up=True)
    return person


async def _hub(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    schema = settings.postgres.schema_
    return await asyncio.to_thread(run_hub, settings, "timeline", "--schema", schema, *args)


def _no_ciphertext(text: str) -> None:
    assert NOTE not in text and "Quimby" not in text
    for word in ("ciphertext", "nonce", '"kid"'):
        assert word not in text, word


async def test_person_read_is_logged_once_before_printing_and_sealed_fields_stay_sealed(
    settings: Settings, api_facts: dict[str, str], access_log: AccessLog, pg_pool: asyncpg.Pool
) -> None:
    person = await _person_with_sealed_note(settings)
    before = await access_log.count()

    args = ("--person", person, "--purpose", "Care Coordination", "--actor", "ops-7", "--json")
    out = await _hub(settings, *args)
    assert out.returncode == 0, out.stderr
    _no_ciphertext(out.stdout)
    doc = json.loads(out.stdout)
    contact = next(e for e in doc["entries"] if e["event_type"] == "case.contact.logged.v2")
    assert contact["detail"]["note"] == {"sealed": True, "erased": False} and contact["erased"] is False
    assert await access_log.count() == before + 1
    (row,) = await access_log.recent(limit=1, subject=person)
    assert (row["sub"], row["role"], row["program"], row["action"], row["purpose"], row["outcome"]) == (
        "ops-7", "operator", None, "person_timeline", "care-coordination", "allowed",
    )
    assert row["entries"] == len(doc["entries"]) >= 2 and row["request_id"].startswith("cli-")

    # the plain-text form is a read too; the default actor is the OS user
    text = await _hub(settings, "--person", person, "--purpose", "treatment")
    assert text.returncode == 0, text.stderr
    _no_ciphertext(text.stdout)
    assert await access_log.count() == before + 2
    latest = (await access_log.recent(limit=1, subject=person))[0]
    assert latest["sub"] == getpass.getuser() and latest["role"] == "operator"


async def test_incident_read_is_logged_and_a_read_without_purpose_is_refused_and_logged(
    settings: Settings, api_facts: dict[str, str], access_log: AccessLog
) -> None:
    incident = "sea:T00001"  # from the API scenario
    before = await access_log.count()
    for args in ((), ("--purpose", ""), ("--purpose", "curiosity")):
        refused = await _hub(settings, "--incident", incident, *args)
        assert refused.returncode == 2 and "--purpose" in refused.stderr and refused.stdout == ""
    assert await access_log.count() == before + 3  # nothing shown; every refusal logged
    rows = await access_log.recent(limit=3, subject=incident)
    assert [(r["outcome"], r["role"], r["purpose"], r["reason"], r["entries"]) for r in rows] == [
        ("refused", "operator", "<invalid>", "bad purpose", 0),
        ("refused", "operator", "<none>", "no purpose", 0),
        ("refused", "operator", "<none>", "no purpose", 0),
    ]
    assert "curiosity" not in str(rows)

    ok = await _hub(settings, "--incident", incident, "--purpose", "operations", "--json")
    assert ok.returncode == 0, ok.stderr
    _no_ciphertext(ok.stdout)
    assert await access_log.count() == before + 4
    (row,) = await access_log.recent(limit=1, subject=incident)
    assert (row["role"], row["action"], row["purpose"]) == ("operator", "incident_timeline", "operations")
    assert row["entries"] == len(json.loads(ok.stdout)["entries"]) > 0
