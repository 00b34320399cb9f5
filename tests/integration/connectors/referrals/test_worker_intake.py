"""Issue 13 item 2: the delivery intake never skips. Its PostgreSQL connection dies at the
ledger INSERT of a referral (a blip); the intake seeks back and takes the referral again,
so it is delivered, although a later referral's batch commits after it. And it never stalls:
a Kafka consumer that stopped fetching is renewed."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import DeliveryWorker, DestinationBase, RetryPolicy, WorkerConfig, WorkerDeps
from hub.kernel import metrics
from hub.kernel.runtime import Runtime
from tests.integration.connectors.referrals.test_worker_outbox import DEST, AcceptingEhr, referral
from tests.integration.cutpool import cut_log
from tests.integration.waiting import wait_for


def intake_worker(
    rt: Runtime, ehr: AcceptingEhr, log: Any, pool: Any, group: str, **cfg: Any
) -> DeliveryWorker:
    """A delivery worker for ``DEST`` on ``log`` and ``pool`` (the runtime's or a cut
    proxy's), fast retries and polls; ``cfg``: more :class:`WorkerConfig` fields."""
    deps = WorkerDeps(
        kafka=rt.kafka, log=log, pool=pool, keyring=rt.keyring,
        deadletter_sealer=rt.deadletter_sealer, topic_prefix=rt.settings.kafka.topic_prefix,
        core_schema=rt.settings.core_schema,
    )
    config = WorkerConfig(group_id=f"{rt.settings.kafka.topic_prefix}-{group}",
                          retry=RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05),
                          poll_interval_s=0.1, lock_retry_s=0.1, **cfg)
    return DeliveryWorker(deps, ehr, {DEST: DestinationBase(display="Clinic")}, config)  # type: ignore[arg-type]


async def test_a_referral_whose_ledger_insert_failed_is_taken_again(log_rt: Runtime) -> None:
    rt = log_rt
    schema = rt.settings.core_schema
    ledger = Ledger(rt.pool, schema)
    ehr = AcceptingEhr()
    async with cut_log(rt) as cut:
        worker = intake_worker(rt, ehr, cut.log, cut.pool, "intake-test")
        cut_at = cut.proxy.arm(  # the intake's INSERT (its column list goes on past person)
            f"INSERT INTO {schema}.referral_deliveries (destination, referral_id, channel, person,".encode()
        )
        await worker.start()
        try:
            assert (await rt.log.append([referral(rt, "R-skip-1")])).appended

            async def was_cut() -> bool:
                return cut_at.is_set()
            await wait_for(was_cut, 30, "the cut at the ledger insert")
            assert (await rt.log.append([referral(rt, "R-skip-2")])).appended

            async def both_delivered() -> bool:
                rows = [await ledger.get(DEST, rid) for rid in ("R-skip-1", "R-skip-2")]
                return all(r is not None and r.state == "delivered" for r in rows)
            await wait_for(both_delivered, 30, "both referrals delivered")
        finally:
            await worker.stop()
    assert sorted(ehr.received) == ["B-R-skip-1", "B-R-skip-2"]


async def test_an_intake_whose_consumer_stopped_fetching_renews_it_and_takes_the_referral(
    log_rt: Runtime,
) -> None:
    """A consumer that fetches nothing while referral requests wait (the seed-7 long fault
    run: aiokafka kept resetting an empty partition's offset at a broker that was no longer
    its leader, and the FHIR intake took nothing in for minutes) is replaced; the new one
    resumes at the committed offsets and the referral is delivered."""
    rt = log_rt
    schema = rt.settings.core_schema
    ledger = Ledger(rt.pool, schema)
    ehr = AcceptingEhr()
    worker = intake_worker(rt, ehr, rt.log, rt.pool, "intake-stall", intake_stall_s=2.0)
    renewals = metrics.INTAKE_RENEWALS.labels(worker.channel)
    before = renewals._value.get()
    await worker.start()
    stuck = worker._consumer
    assert stuck is not None

    async def fetches_nothing(*_: Any, timeout_ms: int = 0, **__: Any) -> dict:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    stuck.getmany = fetches_nothing  # type: ignore[method-assign]
    try:
        assert (await rt.log.append([referral(rt, "R-stall-1")])).appended

        async def delivered() -> bool:
            row = await ledger.get(DEST, "R-stall-1")
            return row is not None and row.state == "delivered"
        await wait_for(delivered, 60, "the referral delivered through a renewed consumer")
    finally:
        await worker.stop()
    assert worker._consumer is not stuck
    assert renewals._value.get() >= before + 1
    assert ehr.received == ["B-R-stall-1"]
