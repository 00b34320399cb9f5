"""Issue 13 item 5, truthful delivery, against the real EHR simulator over HTTP and MLLP:
a hung or flapping EHR that stored a referral without answering never gets it recorded as
``delivery_failed`` (finding 6: 8 of 8 "failed" referrals had been stored); the worker
resends idempotently within its budget and asks the EHR before recording a failure; a
failed delivery is re-driven by ``hub connectors redrive``; one hung referral does not hold
up its destination's queue; and the FHIR Task poller reads each status change from the
Task's history at its own time (finding 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from connectors.fhir.delivery import FhirDestination, FhirTransport
from connectors.fhir.poller import FhirTaskPoller, PollerConfig, PollerDestination
from connectors.hl7v2.delivery import Hl7Destination, Hl7Transport
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import DeliveryWorker, RetryPolicy, WorkerConfig, WorkerDeps
from hub.bootstrap import open_runtime
from hub.devtools.ehr_sim.simulator import EhrSimulator, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.kernel.identity import pseudonymize
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested
from schemas.topics import fact_topic
from tests.integration.hubcli import run_hub
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR_DEST, HL7_DEST = "truth-fhir", "truth-hl7"
# few attempts, quick back-off: without the outcome-unknown budget and the lookup, a hung
# EHR burns the attempts in about a second and the referral is recorded failed
RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.2, unknown_budget_s=30)


def referral(rt: Runtime, rid: str, channel: str, destination: str) -> Envelope:
    data = ReferralRequested(
        referral_id=rid, person=pseudonymize(rt.pseudonym_key, "test:truthful", rid), at=datetime.now(UTC),
        incident_id="test:INC-T", destination=destination, channel=channel,  # type: ignore[arg-type]
        service_type="behavioral_health", substance_use=False, requester="team-1",  # type: ignore[arg-type]
        reason=None,
    )
    return new_event(data, source="test/truthful", record_id=rid)


async def events_of(rt: Runtime, rid: str) -> list[Envelope]:
    topic = fact_topic(rt.settings.kafka.topic_prefix, "referral")
    return [e.envelope async for e in rt.log.read([topic]) if e.envelope.data.get("referral_id") == rid]


async def state(ledger: Ledger, dest: str, rid: str) -> str | None:
    row = await ledger.get(dest, rid)
    return row.state if row else None


class Truth:
    def __init__(self, rt: Runtime, sim: EhrSimulator, fhir: DeliveryWorker, hl7: DeliveryWorker) -> None:
        self.rt, self.sim, self.fhir, self.hl7 = rt, sim, fhir, hl7
        self.ledger = Ledger(rt.pool, rt.settings.core_schema)

    async def final(self, dest: str, rid: str, timeout: float = 40) -> str:
        async def done() -> str | None:  # final, and its outcome event in the log (outbox clear)
            row = await self.ledger.get(dest, rid)
            if row is None or row.outbox is not None:
                return None
            return row.state if row.state in ("delivered", "rejected", "failed") else None

        return str(await wait_for(done, timeout, f"{rid} to reach a final state", interval=0.1))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def truth(settings: Settings, topics: Any) -> AsyncIterator[Truth]:
    async with open_runtime(settings) as rt:
        deps = WorkerDeps.from_runtime(rt)
        sim = EhrSimulator(SimConfig(
            lifecycle=Lifecycle(accept_after_s=0.4, progress_after_s=0.8, complete_after_s=3600),
            flap_up_s=0.4, flap_down_s=1.5, seed=13,
        ))
        await sim.start()
        fdest = {FHIR_DEST: FhirDestination(display="Truth FHIR", base_url=sim.fhir_base_url, timeout_s=0.4)}
        hdest = {HL7_DEST: Hl7Destination(display="Truth HL7", host="127.0.0.1", port=sim.mllp_port,
                                          read_timeout_s=0.4, connect_timeout_s=1.0)}
        cfg = WorkerConfig(retry=RETRY, poll_interval_s=0.2, max_in_flight=4)
        fhir = DeliveryWorker(deps, FhirTransport(fdest), fdest, cfg)  # type: ignore[arg-type]
        hl7 = DeliveryWorker(deps, Hl7Transport(hdest), hdest, cfg)  # type: ignore[arg-type]
        await fhir.start()
        await hl7.start()
        try:
            yield Truth(rt, sim, fhir, hl7)
        finally:
            await hl7.stop()
            await fhir.stop()
            await sim.stop()


@pytest.mark.parametrize(("channel", "dest"), [("fhir", FHIR_DEST), ("hl7v2", HL7_DEST)])
async def test_a_referral_stored_by_a_hung_ehr_is_delivered_not_failed(
    truth: Truth, channel: str, dest: str
) -> None:
    rid = f"R-hung-{channel}"
    truth.sim.set_mode("hung")
    try:
        await truth.rt.log.append([referral(truth.rt, rid, channel, dest)])

        async def stored_and_retried() -> bool:
            row = await truth.ledger.get(dest, rid)
            resent = row is not None and row.attempts > RETRY.max_attempts
            return resent and rid in truth.sim.received_referral_ids()

        # the EHR stored it and never answered; the worker resends past max_attempts
        await wait_for(stored_and_retried, 20, "the hung EHR to store the referral and the worker to resend")
        assert await state(truth.ledger, dest, rid) == "sending"
    finally:
        truth.sim.set_mode("normal")
    assert await truth.final(dest, rid) == "delivered"
    kinds = [e.type for e in await events_of(truth.rt, rid)]
    assert "referral.delivery_failed.v1" not in kinds and kinds.count("referral.delivered.v1") == 1
    assert truth.sim.stats()["duplicates"] == 0


async def test_a_flapping_ehr_that_drops_after_storing_gets_no_false_failure(truth: Truth) -> None:
    truth.sim.set_mode("flapping")
    rids = {f"R-flap-{i}": (("fhir", FHIR_DEST) if i % 2 else ("hl7v2", HL7_DEST)) for i in range(12)}
    try:
        # append as a down phase begins, so the first sends meet an EHR that stores and never
        # answers (on a fast machine all twelve would otherwise fit in the first up phase)
        async def down() -> bool:
            return truth.sim.down()

        await wait_for(down, 10, "the flapping EHR's first down phase", interval=0.01)
        await truth.rt.log.append([referral(truth.rt, rid, ch, d) for rid, (ch, d) in rids.items()])
        finals = {rid: await truth.final(d, rid, 60) for rid, (_, d) in rids.items()}
    finally:
        truth.sim.set_mode("normal")
    assert set(finals.values()) == {"delivered"}, finals
    assert truth.sim.stats()["mode_effects"].get("flap-stored", 0) > 0  # the trap really was set
    assert truth.sim.stats()["duplicates"] == 0


async def test_before_failing_the_worker_asks_the_ehr_which_has_it(truth: Truth) -> None:
    """The EHR stores the referral but every answer is lost (drop after storing), for longer
    than the budget: the lookup (ServiceRequest by business identifier) finds it."""
    rid = "R-lookup"
    faults = truth.sim.config.fhir_faults
    truth.fhir.config = truth.fhir.config.model_copy(
        update={"retry": RETRY.model_copy(update={"unknown_budget_s": 0.5})}
    )
    faults.drop_after = 1.0  # transactions only: the search is answered
    try:
        await truth.rt.log.append([referral(truth.rt, rid, "fhir", FHIR_DEST)])
        assert await truth.final(FHIR_DEST, rid) == "delivered"
    finally:
        faults.drop_after = 0.0
        truth.fhir.config = truth.fhir.config.model_copy(update={"retry": RETRY})
    delivered = [e for e in await events_of(truth.rt, rid) if e.type == "referral.delivered.v1"]
    assert len(delivered) == 1 and delivered[0].data["remote_id"].startswith("ServiceRequest/")
    assert truth.sim.stats()["duplicates"] == 0


async def test_one_hung_referral_does_not_block_its_destination(truth: Truth) -> None:
    slow = "R-hol-slow"
    truth.sim.hang_referral(slow)
    try:
        await truth.rt.log.append([referral(truth.rt, slow, "fhir", FHIR_DEST)])
        await wait_for(lambda: _true(slow in truth.sim.received_referral_ids()), 20, "the slow one stored")
        rest = [f"R-hol-{i}" for i in range(6)]
        await truth.rt.log.append([referral(truth.rt, rid, "fhir", FHIR_DEST) for rid in rest])
        for rid in rest:  # delivered while the slow one is still unanswered
            assert await truth.final(FHIR_DEST, rid, 20) == "delivered"
        assert await state(truth.ledger, FHIR_DEST, slow) == "sending"
    finally:
        truth.sim.unhang_referral(slow)
    assert await truth.final(FHIR_DEST, slow) == "delivered"
    assert truth.sim.stats()["duplicates"] == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_failed_delivery_is_redriven_by_hub_connectors_redrive(truth: Truth) -> None:
    rid = "R-redrive"
    faults = truth.sim.config.fhir_faults
    faults.error = 1.0  # 503 to every transaction: nothing stored, the EHR says it has none
    try:
        await truth.rt.log.append([referral(truth.rt, rid, "fhir", FHIR_DEST)])
        assert await truth.final(FHIR_DEST, rid) == "failed"
    finally:
        faults.error = 0.0
    failed = [e for e in await events_of(truth.rt, rid) if e.type == "referral.delivery_failed.v1"]
    assert len(failed) == 1 and "the EHR does not have it" in failed[0].data["last_error"]

    done = run_hub(truth.rt.settings, "connectors", "redrive", "--destination", FHIR_DEST, "--referral", rid)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["redriven"] == 1
    assert await truth.final(FHIR_DEST, rid) == "delivered"
    row = await truth.ledger.get(FHIR_DEST, rid)
    assert row is not None and row.redrives == 1
    kinds = [e.type for e in await events_of(truth.rt, rid)]
    assert kinds.count("referral.delivery_failed.v1") == 1 and kinds.count("referral.delivered.v1") == 1
    again = run_hub(truth.rt.settings, "connectors", "redrive", "--destination", FHIR_DEST, "--referral", rid)
    assert json.loads(again.stdout)["redriven"] == 0  # only failed deliveries are re-driven


async def test_task_changes_made_while_the_hub_was_away_keep_their_own_times(truth: Truth) -> None:
    """Finding 5: ``accepted`` then ``in-progress`` while the poller was not polling. Reading
    the current state recorded the acceptance at the in-progress time; the history keeps it."""
    rid = "R-history"
    await truth.rt.log.append([referral(truth.rt, rid, "fhir", FHIR_DEST)])
    assert await truth.final(FHIR_DEST, rid) == "delivered"
    task = truth.sim.fhir.task_for_referral(rid)
    assert task is not None
    await wait_for(lambda: _true(task["status"] == "in-progress"), 20, "accepted, then in progress")
    versions = [v for v in truth.sim.fhir.task_history if v["id"] == task["id"]]
    accepted_at = next(v["lastModified"] for v in versions if v["status"] == "accepted")
    assert accepted_at != task["lastModified"]

    # the poller starts only now (the hub was away during both changes)
    poller = FhirTaskPoller(WorkerDeps.from_runtime(truth.rt), PollerConfig(
        interval_s=0.2, destinations={FHIR_DEST: PollerDestination(base_url=truth.sim.fhir_base_url)},
    ))
    await poller.poll_once(FHIR_DEST)
    accepted = [e for e in await events_of(truth.rt, rid) if e.type == "referral.accepted.v1"]
    assert len(accepted) == 1
    assert datetime.fromisoformat(accepted[0].data["at"]) == datetime.fromisoformat(accepted_at)
    assert accepted[0].data["source_status"] == "accepted"
    await poller.poll_once(FHIR_DEST)  # the cursor's boundary is re-read: nothing new
    assert len([e for e in await events_of(truth.rt, rid) if e.type == "referral.accepted.v1"]) == 1
    await poller.stop()
