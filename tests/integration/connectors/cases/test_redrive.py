"""A case dead letter re-driven with ``hub.kernel.deadletters.redrive`` keeps its contact note:
the cases redriver of :data:`connectors.registry.REDRIVERS` gets the runtime's keyring and
pseudonym key, so the note is sealed with the person's key (as on first ingest), never
dropped and never clear."""

from __future__ import annotations

import json
import uuid

from connectors.cases.redrive import redrive_case
from connectors.registry import REDRIVERS
from hub.kernel.crypto import unseal
from hub.kernel.deadletters import DeadLetterStore, build_dead_letter, redrive
from hub.kernel.identity import pseudonymize
from hub.kernel.runtime import Runtime
from schemas.envelope import Envelope

NOTE = "talked about housing and the shelter waitlist"


async def test_redriven_case_contact_keeps_its_note_sealed_with_the_persons_key(log_rt: Runtime) -> None:
    assert REDRIVERS["cases"] is redrive_case  # the registered redriver is the one exercised
    tag = uuid.uuid4().hex[:8]
    record = {
        "record_id": f"r-{tag}", "record_type": "contact_logged", "case_id": f"c-{tag}",
        "person": {"system": "mpi:county", "id": f"MPI-{tag}"},
        "occurred_at": "2024-03-02T10:00:00+00:00", "version": 1, "note": NOTE,
    }
    raw = json.dumps(record).encode()
    dl = build_dead_letter(source="cases/redrive-test", source_family="cases", record_ref=f"page1@{tag}",
                           stage="map", reason="unknown contact kind", raw=raw,
                           sealer=log_rt.deadletter_sealer)
    assert await log_rt.log.dead_letters([dl]) == [True]
    store = DeadLetterStore(log_rt.pool, log_rt.settings.core_schema)

    produced: list[Envelope] = []

    async def spy(dl, raw: bytes, *, keyring, pseudonym_key, pool, settings):  # type: ignore[no-untyped-def]
        assert keyring is log_rt.keyring and pseudonym_key == log_rt.pseudonym_key
        out = await redrive_case(dl, raw, keyring=keyring, pseudonym_key=pseudonym_key, pool=pool,
                                 settings=settings)
        produced.extend(out)
        return out

    outcome = await redrive(log_rt, await store.get(dl.id), {"cases": spy})
    assert outcome.ok and outcome.appended == 1, outcome
    (env,) = produced
    person = pseudonymize(log_rt.pseudonym_key, "mpi:county", f"MPI-{tag}")
    assert env.data["person"] == person
    note = env.payload().note  # type: ignore[attr-defined]
    assert note is not None, "the contact note was dropped on re-drive"
    assert note.kid == log_rt.keyring.key_id(person)
    assert unseal(log_rt.keyring, note) == {"note": NOTE}
    assert NOTE not in env.model_dump_json() and f"MPI-{tag}" not in env.model_dump_json()
    assert (await store.get(dl.id)).status == "redriven"  # type: ignore[union-attr]

    # through the real registry too (no spy): already re-driven, left alone
    again = await redrive(log_rt, await store.get(dl.id), REDRIVERS)
    assert again.ok and again.error == "already re-driven"
