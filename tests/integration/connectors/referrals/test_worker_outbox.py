"""Issue 13 item 1, delivery outcomes: the worker's PostgreSQL connection dies at the event
index's offset ``UPDATE`` right after Kafka acknowledged a ``referral.delivered`` (and a
``referral.held_for_consent``). The outcome was stored in the ledger's outbox with the
transition, so the recovery appends the same bytes again: the log holds an orphan copy and
its indexed copy, ``hub verify`` passes, and the EHR received the referral once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.referrals.content import Disclosure
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import (
    DeliveryWorker,
    DestinationBase,
    Rendered,
    RetryPolicy,
    SendResult,
    WorkerConfig,
    WorkerDeps,
)
from hub.kernel.identity import pseudonymize
from hub.kernel.runtime import Runtime
from hub.kernel.verify import run_verify
from schemas.envelope import Envelope, new_event
from schemas.referral import Channel, ReferralRequested
from schemas.topics import fact_topic
from tests.integration.cutpool import cut_log, index_statement
from tests.integration.hubcli import run_hub
from tests.integration.waiting import wait_for

DEST = "clinic-outbox"


@dataclass
class AcceptingEhr:
    """A receiver that accepts every referral (and counts what it received)."""

    channel: Channel = "fhir"
    received: list[str] = field(default_factory=list)

    def render(self, disclosure: Disclosure) -> Rendered:
        return Rendered(f"B-{disclosure.request.referral_id}", disclosure.request.referral_id.encode())

    async def send(self, destination: str, rendered: Rendered) -> SendResult:
        self.received.append(rendered.message_id)
        return SendResult("accepted", "201", remote_id=f"Task/{len(self.received)}")

    async def lookup(self, destination: str, rendered: Rendered, request: ReferralRequested) -> SendResult:
        return SendResult("accepted", "found") if rendered.message_id in self.received else SendResult(
            "retry", "absent")

    async def close(self) -> None:
        return None


def referral(rt: Runtime, rid: str, *, substance_use: bool = False) -> Envelope:
    person = pseudonymize(rt.pseudonym_key, "test:outbox", rid)
    data = ReferralRequested(
        referral_id=rid, person=person, at=datetime.now(UTC), incident_id="test:INC-9",
        destination=DEST, channel="fhir", service_type="behavioral_health",  # type: ignore[arg-type]
        substance_use=substance_use, requester="team-1", reason=None,
    )
    return new_event(data, source="test/outbox", record_id=rid)


async def outcome_copies(rt: Runtime, rid: str) -> list[Envelope]:
    topic = fact_topic(rt.settings.kafka.topic_prefix, "referral")
    return [e.envelope async for e in rt.log.read([topic])
            if e.envelope.data.get("referral_id") == rid and e.envelope.type != "referral.requested.v1"]


async def test_outcomes_cut_after_the_ack_are_reappended_as_stored(log_rt: Runtime) -> None:
    rt = log_rt
    ledger = Ledger(rt.pool, rt.settings.core_schema)
    ehr = AcceptingEhr()
    async with cut_log(rt) as cut:
        deps = WorkerDeps(
            kafka=rt.kafka, log=cut.log, pool=cut.pool, keyring=rt.keyring,
            deadletter_sealer=rt.deadletter_sealer, topic_prefix=rt.settings.kafka.topic_prefix,
            core_schema=rt.settings.core_schema,
        )
        cfg = WorkerConfig(retry=RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05),
                           poll_interval_s=0.1, lock_retry_s=0.1)
        worker = DeliveryWorker(deps, ehr, {DEST: DestinationBase(display="Clinic")}, cfg)  # type: ignore[arg-type]
        marker = index_statement(rt.settings.core_schema)

        async def cut_count(n: int) -> bool:
            return cut.proxy.cuts >= n

        await worker.start()
        try:
            # the delivered outcome's append dies at the index statement after the ack
            cut.proxy.arm(marker)
            assert (await rt.log.append([referral(rt, "R-out-1")])).appended
            await wait_for(lambda: cut_count(1), 30, "the first cut")

            async def settled() -> bool:
                row = await ledger.get(DEST, "R-out-1")
                return row is not None and row.state == "delivered" and row.outbox is None
            await wait_for(settled, 30, "the delivered outcome appended from the outbox")

            # so does the hold of a Part 2 referral without consent
            cut.proxy.arm(marker)
            assert (await rt.log.append([referral(rt, "R-out-2", substance_use=True)])).appended
            await wait_for(lambda: cut_count(2), 30, "the second cut")

            async def held() -> bool:
                row = await ledger.get(DEST, "R-out-2")
                return row is not None and row.state == "held" and row.outbox is None
            await wait_for(held, 30, "the held outcome appended from the outbox")
        finally:
            await worker.stop()

    assert ehr.received == ["B-R-out-1"]  # delivered once; the Part 2 referral never disclosed
    for rid, kind in (("R-out-1", "referral.delivered.v1"), ("R-out-2", "referral.held_for_consent.v1")):
        copies = await outcome_copies(rt, rid)
        assert [c.type for c in copies] == [kind, kind]
        assert copies[0].to_bytes() == copies[1].to_bytes()  # as stored: byte-identical
    report = await run_verify(rt.settings, rt.pool, rt.kafka, store=False)
    assert report.ok, [b.describe() for b in report.breaks]
    assert len(report.orphan_copies) == 2
    cli = await asyncio.to_thread(run_hub, rt.settings, "verify")
    assert cli.returncode == 0, cli.stdout + cli.stderr
