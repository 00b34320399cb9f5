"""Issue 13, finding 8, end to end on the real Kafka and PostgreSQL against the EHR simulator:

- FHIR: a validating server's transient 4xx (409 version conflict) is retried, and the
  referral delivered — it used to be recorded as rejected, and lost;
- HL7 v2: an EHR that answers like an interface engine (``hl7_layout="engine"``: v2.3 ACKs
  with the error code in MSA-6/ERR-1, every answer in an FHS/BHS batch, RRI^I12 in Latin-1
  with the clinic's MRN before the pseudonym in PID-3, escapes in the note) is understood,
  and a referral whose id is too long for RF1-6 is sent under its short form and its answer
  mapped back to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from connectors.fhir.delivery import FhirDestination, FhirTransport
from connectors.hl7v2.delivery import Hl7Destination, Hl7Transport
from connectors.hl7v2.listener import MllpListener
from connectors.referrals.content import hl7_referral_id
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import DeliveryWorker, RetryPolicy, WorkerConfig, WorkerDeps
from hub.bootstrap import open_runtime
from hub.devtools.ehr_sim.simulator import ENGINE_DECLINE_NOTE, EhrSimulator, Faults, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.kernel.crypto import unseal
from hub.kernel.identity import pseudonymize
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from schemas.base import Sealed
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested
from schemas.topics import fact_topic
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR_DEST, HL7_DEST = "conform-fhir", "conform-hl7"
RETRY = RetryPolicy(max_attempts=6, base_delay_s=0.02, max_delay_s=0.1, unknown_budget_s=30)


@dataclass
class Conform:
    rt: Runtime
    sim: EhrSimulator
    listener: MllpListener
    ledger: Ledger

    def referral(self, rid: str, channel: str, destination: str) -> Envelope:
        data = ReferralRequested(
            referral_id=rid, person=pseudonymize(self.rt.pseudonym_key, "test:conform", rid),
            at=datetime.now(UTC), incident_id="test:INC-C", destination=destination,
            channel=channel, service_type="behavioral_health", requester="team-1",  # type: ignore[arg-type]
        )
        return new_event(data, source="test/conform", record_id=rid)

    async def events(self, rid: str) -> list[Envelope]:
        topic = fact_topic(self.rt.settings.kafka.topic_prefix, "referral")
        records = self.rt.log.read([topic])
        return [e.envelope async for e in records if e.envelope.data.get("referral_id") == rid]

    async def final(self, dest: str, rid: str) -> str:
        async def done() -> str | None:
            row = await self.ledger.get(dest, rid)
            if row is None or row.outbox is not None:
                return None
            return row.state if row.state in ("delivered", "rejected", "failed") else None

        return str(await wait_for(done, 40, f"{rid} to reach a final state", interval=0.1))

    async def attempts(self, dest: str, rid: str) -> list[tuple[str, str]]:
        rows = await self.rt.pool.fetch(
            f"SELECT result, coalesce(detail, '') AS detail FROM {self.ledger.a} "
            "WHERE destination = $1 AND referral_id = $2 ORDER BY attempt",
            dest, rid,
        )
        return [(r["result"], r["detail"]) for r in rows]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def conform(settings: Settings, topics: Any) -> AsyncIterator[Conform]:
    async with open_runtime(settings) as rt:
        deps = WorkerDeps.from_runtime(rt)
        listener = MllpListener(deps, host="127.0.0.1", port=0)
        await listener.start()
        sim = EhrSimulator(SimConfig(
            answer_to=("127.0.0.1", listener.port),
            hl7_layout="engine",
            # seed 45 draws eight values below 0.5 first: the first REF^I12s get an AE
            mllp_faults=Faults(error=0.5),
            lifecycle=Lifecycle(
                accept_after_s=0.2, progress_after_s=0.4, complete_after_s=0.6, decline_rate=1.0
            ),
            seed=45,
        ))
        await sim.start()
        fdest = {
            FHIR_DEST: FhirDestination(display="Conform FHIR", base_url=sim.fhir_base_url, timeout_s=2.0)
        }
        hdest = {HL7_DEST: Hl7Destination(display="Conform HL7", host="127.0.0.1", port=sim.mllp_port,
                                          read_timeout_s=2.0, connect_timeout_s=1.0)}
        cfg = WorkerConfig(retry=RETRY, poll_interval_s=0.2)
        fhir = DeliveryWorker(deps, FhirTransport(fdest), fdest, cfg)  # type: ignore[arg-type]
        hl7 = DeliveryWorker(deps, Hl7Transport(hdest), hdest, cfg)  # type: ignore[arg-type]
        await fhir.start()
        await hl7.start()
        try:
            yield Conform(rt, sim, listener, Ledger(rt.pool, rt.settings.core_schema))
        finally:
            await hl7.stop()
            await fhir.stop()
            await sim.stop()
            await listener.stop()


async def test_a_transient_409_is_retried_and_the_referral_delivered(conform: Conform) -> None:
    rid = "R-conform-busy"
    conform.sim.busy_referral(rid, 2)
    await conform.rt.log.append([conform.referral(rid, "fhir", FHIR_DEST)])
    assert await conform.final(FHIR_DEST, rid) == "delivered"
    results = await conform.attempts(FHIR_DEST, rid)
    assert [r for r, _ in results][:2] == ["409", "409"] and len(results) == 3
    assert "conflict" in results[0][1]
    types = [e.type for e in await conform.events(rid)]
    assert "referral.delivered.v1" in types and "referral.rejected.v1" not in types
    assert rid in conform.sim.received_referral_ids()


async def test_an_engine_style_ehr_and_a_long_referral_id(conform: Conform) -> None:
    rids = [f"R-conform-long-{i}-" + "x" * 50 for i in range(3)]
    await conform.rt.log.append([conform.referral(rid, "hl7v2", HL7_DEST) for rid in rids])
    for rid in rids:
        assert await conform.final(HL7_DEST, rid) == "delivered"
    # RF1-6 carried the short form (30 characters with ^COHUB), and the ledger knows it
    wire = {hl7_referral_id(rid): rid for rid in rids}
    assert all(len(w) + len("^COHUB") <= 30 for w in wire)
    assert set(wire) <= conform.sim.hl7.referral_ids()
    for short, rid in wire.items():
        row = await conform.ledger.find_referral(short, "hl7v2")
        assert row is not None and row.referral_id == rid
    # the engine's v2.3 AE (code in MSA-6 / ERR-1, in a batch) was read, and retried
    results = [r for rid in rids for r in await conform.attempts(HL7_DEST, rid)]
    assert ("AE", "207 simulated application error") in results, results
    # the engine's answers (batch, Latin-1, MRN first, escaped note) reach the referral
    async def declined() -> list[Envelope] | None:
        found = [e for rid in rids for e in await conform.events(rid) if e.type == "referral.declined.v1"]
        return found if len(found) == len(rids) else None

    answers = await wait_for(declined, 40, "a declined answer to every long-id referral", interval=0.2)
    assert {e.data["referral_id"] for e in answers} == set(rids)
    for e in answers:
        note = Sealed.model_validate(e.data["note"])
        assert unseal(await conform.rt.keyring.resolve_ids([note.kid]), note) == {"text": ENGINE_DECLINE_NOTE}
    assert conform.listener.counts["AR"] == 0 and conform.listener.counts["dead_letters"] == 0
    assert conform.sim.rri_acks.get("AA", 0) >= len(rids)


async def test_a_row_queued_before_the_short_form_gets_it_before_it_is_sent(conform: Conform) -> None:
    """A long-id HL7 row of an older release has no short form; its next attempt records it,
    so the answer to the message it is resent as still finds it."""
    rid = "R-conform-old-" + "y" * 40
    env = conform.referral(rid, "hl7v2", "conform-old")  # a destination no worker serves
    assert await conform.ledger.enqueue(env, ReferralRequested.model_validate(env.data))
    await conform.rt.pool.execute(
        f"UPDATE {conform.ledger.t} SET hl7_referral_id = NULL WHERE referral_id = $1", rid
    )
    short = hl7_referral_id(rid)
    assert await conform.ledger.find_referral(short, "hl7v2") is None
    await conform.ledger.begin_attempt("conform-old", rid, 1, "H1")
    row = await conform.ledger.find_referral(short, "hl7v2")
    assert row is not None and row.referral_id == rid
    assert (await conform.ledger.find_referral(rid, "hl7v2")) == row  # the id itself still finds it
