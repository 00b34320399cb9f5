"""``hub erase`` end to end on the real broker and database: the erasure fact is appended,
the person's key destroyed, their sealed payload unreadable in a replay, and the read API
shows the field (and the entry) as erased instead of failing."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from hub.bootstrap import open_runtime
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.audit import AccessLog
from hub.kernel.crypto import KeyDestroyedError, seal, unseal
from hub.kernel.identity import pseudonymize
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from projections.projector import project
from schemas.base import Sealed
from schemas.case import CaseOpened, ContactLogged
from schemas.envelope import new_event
from tests.conftest import session_settings
from tests.integration.hubcli import run_hub

PROGRAM = "coresp-erase"
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


async def _person_timeline(settings: Settings, rt: Runtime, person: str) -> dict:
    issuer = DevIssuer.open(settings)
    app = create_app(
        settings,
        PostgresReadModels(settings, rt.pool),
        AccessLog(rt.pool, settings.core_schema, rt.audit),
        TokenVerifier(settings, jwks=issuer.jwks()),
        dev_issuer=issuer,
    )
    token = issuer.mint(sub="clin-1", role="clinician", program=PROGRAM)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    async with app.router.lifespan_context(app), client as c:
        resp = await c.get(
            f"/v1/persons/{person}/timeline",
            headers={"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "treatment"},
        )
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.integration
async def test_hub_erase_shreds_the_sealed_note_in_replay_and_api(services: object) -> None:
    settings = session_settings()
    try:
        async with open_runtime(settings) as rt:
            person = pseudonymize(rt.pseudonym_key, "mpi:erase-test", uuid.uuid4().hex)
            note = seal(rt.keyring, person, {"note": "Jane Quimby, DOB 1984-07-19, talked about housing"},
                        context="test/fact/note")
            await rt.log.append([
                new_event(CaseOpened(case_id="e1", person=person, at=T0, program=PROGRAM),
                          source="test/erase", record_id="open"),
                new_event(ContactLogged(case_id="e1", person=person, at=T0 + timedelta(hours=1), note=note),
                          source="test/erase", record_id="contact"),
            ])
            await project(rt, until_caught_up=True)
            before = await _person_timeline(settings, rt, person)
        contact = next(e for e in before["entries"] if e["event_type"] == "case.contact.logged.v2")
        assert contact["data"]["note"] == {"sealed": True, "erased": False} and contact["erased"] is False
        assert "ciphertext" not in json.dumps(before)

        args = ("erase", "--person", person, "--basis", "RR-2026-7", "--requested-by", "jdoe", "--json")
        first = await asyncio.to_thread(run_hub, settings, *args)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout) | {"event_id": None} == {
            "person": person, "event_id": None, "appended": True, "key_destroyed": True,
            "incident_keys_destroyed": 0,
        }
        again = await asyncio.to_thread(run_hub, settings, *args)  # idempotent
        assert again.returncode == 0 and json.loads(again.stdout)["appended"] is False
        assert json.loads(again.stdout)["key_destroyed"] is False
        bad = await asyncio.to_thread(run_hub, settings, "erase", "--person", "Jane Quimby",
                                      "--basis", "x", "--requested-by", "y")
        assert bad.returncode == 2 and "pseudonym" in bad.stderr

        async with open_runtime(settings) as rt:  # a fresh process: a replay of the whole log
            replayed = [e.envelope async for e in rt.log.replay(families=["case", "erasure"])
                        if e.envelope.partitionkey == person]
            kinds = [e.type for e in replayed]
            assert kinds.count("erasure.person.erased.v1") == 1 and "case.contact.logged.v2" in kinds
            erased_fact = next(e for e in replayed if e.type == "erasure.person.erased.v1")
            assert erased_fact.data["basis"] == "RR-2026-7" and erased_fact.data["requested_by"] == "jdoe"
            sealed = Sealed.model_validate(
                next(e for e in replayed if e.type == "case.contact.logged.v2").data["note"]
            )
            with pytest.raises(KeyDestroyedError):
                unseal(rt.keyring, sealed)
            with pytest.raises(KeyDestroyedError):  # nothing new can be sealed for the person
                seal(rt.keyring, person, {"note": "later"}, context="test/fact/note")
            assert await rt.keyring.is_destroyed(person)

            await project(rt, until_caught_up=True)
            after = await _person_timeline(settings, rt, person)
        contact = next(e for e in after["entries"] if e["event_type"] == "case.contact.logged.v2")
        assert contact["data"]["note"] == {"sealed": True, "erased": True} and contact["erased"] is True
        assert any(e["event_type"] == "erasure.person.erased.v1" for e in after["entries"])
        assert "Jane" not in json.dumps(after)
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)


@pytest.mark.integration
async def test_hub_erase_of_several_persons_is_one_rotation(services: object) -> None:
    settings = session_settings()
    core = settings.core_schema
    try:
        async with open_runtime(settings) as rt:
            people = [pseudonymize(rt.pseudonym_key, "mpi:erase-test", uuid.uuid4().hex) for _ in range(3)]
            notes = {p: seal(rt.keyring, p, {"note": "talked about housing"}, context=f"test/erase/{p}")
                     for p in people}
            epoch = await rt.pool.fetchval(f"SELECT epoch FROM {core}.key_epochs WHERE retired_at IS NULL")
        args = ["erase", "--person", people[0], "--person", people[1], "--basis", "RR-2026-8",
                "--requested-by", "jdoe", "--json"]
        out = await asyncio.to_thread(run_hub, settings, *args)
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout)
        assert [(r["person"], r["appended"], r["key_destroyed"]) for r in results] == [
            (people[0], True, True), (people[1], True, True),
        ]
        async with open_runtime(settings) as rt:
            assert await rt.pool.fetchval(
                f"SELECT epoch FROM {core}.key_epochs WHERE retired_at IS NULL"
            ) == epoch + 1  # both persons in one rotation
            assert rt.keyring.token.epochs() == [epoch + 1]
            for p in people[:2]:
                with pytest.raises(KeyDestroyedError):
                    unseal(rt.keyring, notes[p])
            assert unseal(rt.keyring, notes[people[2]]) == {"note": "talked about housing"}
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)
