"""Referral delivery end to end on the real Kafka and PostgreSQL, against the EHR simulator
with faults: exactly-once delivery, the Part 2 consent gate, inbound answers and bad input."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from connectors.fhir.client import AuthConfig
from connectors.fhir.delivery import FhirDestination, FhirTransport
from connectors.fhir.poller import FhirTaskPoller, PollerConfig, PollerDestination
from connectors.hl7v2.ack import parse_ack
from connectors.hl7v2.delivery import Hl7Destination, Hl7Transport
from connectors.hl7v2.listener import MllpListener
from connectors.hl7v2.mllp import MllpClient
from connectors.hl7v2.rri import build_rri_i12
from connectors.referrals.content import ReferralReason
from connectors.referrals.ledger import Ledger
from connectors.referrals.worker import DeliveryWorker, RetryPolicy, WorkerConfig, WorkerDeps
from hub.devtools.ehr_sim.simulator import EhrSimulator, Faults, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.kernel.crypto import seal, seal_context
from hub.kernel.identity import pseudonymize
from hub.kernel.kafka_io import scan_records
from hub.kernel.runtime import Runtime
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.envelope import Envelope, new_event
from schemas.referral import ReferralRequested
from schemas.topics import fact_topic
from tests.integration.forge import produce_forged
from tests.integration.runtimes import fresh_namespace

pytestmark = pytest.mark.integration

FHIR_DEST = "clinic-fhir"
HL7_DEST = "clinic-hl7"
FAST_RETRY = RetryPolicy(max_attempts=25, base_delay_s=0.01, max_delay_s=0.05)


async def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Hub:
    rt: Runtime
    sim: EhrSimulator
    listener: MllpListener
    fhir: DeliveryWorker
    hl7: DeliveryWorker
    poller: FhirTaskPoller
    ledger: Ledger

    def person(self, name: str) -> str:
        return pseudonymize(self.rt.pseudonym_key, "test:referrals", name)

    def referral(
        self,
        rid: str,
        person: str,
        *,
        channel: str,
        destination: str,
        substance_use: bool = False,
        text: str = "Crisis follow-up requested",
    ) -> Envelope:
        reason = seal(
            self.rt.keyring, person, ReferralReason(text=text, gender="female").model_dump(mode="json"),
            context=seal_context("test/referrals", rid, 0, "reason"),
        )
        data = ReferralRequested(
            referral_id=rid,
            person=person,
            at=datetime.now(UTC),
            incident_id="test:INC-1",
            destination=destination,
            channel=channel,
            service_type="behavioral_health",  # type: ignore[arg-type]
            substance_use=substance_use,
            requester="team-1",
            reason=reason,
        )
        return new_event(data, source="test/referrals", record_id=rid)

    async def referral_events(self) -> list[Envelope]:
        topic = fact_topic(self.rt.settings.kafka.topic_prefix, "referral")
        return [e.envelope async for e in self.rt.log.read([topic])]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(services: Any) -> AsyncIterator[Hub]:
    # a namespace of its own: the forged consents it produces must not reach other tests'
    # logs (the e2e demo runs over the session's prefix and verifies it)
    async with fresh_namespace() as rt:
        deps = WorkerDeps.from_runtime(rt)
        listener = MllpListener(deps, host="127.0.0.1", port=0)
        await listener.start()
        sim = EhrSimulator(
            SimConfig(
                answer_to=("127.0.0.1", listener.port),
                fhir_faults=Faults(
                    drop_before=0.03, drop_after=0.04, error=0.05, timeout=0.01, timeout_s=0.6
                ),
                mllp_faults=Faults(
                    drop_before=0.03, drop_after=0.04, error=0.06, timeout=0.01, timeout_s=0.6
                ),
                lifecycle=Lifecycle(
                    accept_after_s=0.3, progress_after_s=0.6, complete_after_s=0.9, decline_rate=0.1
                ),
                require_auth=True,
                seed=5,
            )
        )
        await sim.start()
        auth = AuthConfig(
            type="client_credentials", token_url=sim.token_url, client_id="cohub", client_secret="sim-secret"
        )
        fdest = {
            FHIR_DEST: FhirDestination(
                display="FHIR Clinic",
                base_url=sim.fhir_base_url,
                auth=auth,
                timeout_s=0.3,
                share_demographics=frozenset({"gender"}),
            )
        }
        hdest = {
            HL7_DEST: Hl7Destination(
                display="HL7 Clinic",
                host="127.0.0.1",
                port=sim.mllp_port,
                read_timeout_s=0.3,
                connect_timeout_s=1.0,
            )
        }
        cfg = WorkerConfig(retry=FAST_RETRY, poll_interval_s=0.2, requesters={"team-1": "Co-responder team"})
        fhir = DeliveryWorker(deps, FhirTransport(fdest), fdest, cfg)  # type: ignore[arg-type]
        hl7 = DeliveryWorker(deps, Hl7Transport(hdest), hdest, cfg)  # type: ignore[arg-type]
        poller = FhirTaskPoller(
            deps,
            PollerConfig(
                interval_s=0.3,
                destinations={FHIR_DEST: PollerDestination(base_url=sim.fhir_base_url, auth=auth)},
            ),
        )
        for c in (fhir, hl7, poller):
            await c.start()
        try:
            yield Hub(rt, sim, listener, fhir, hl7, poller, Ledger(rt.pool, rt.settings.core_schema))
        finally:
            for c in (poller, hl7, fhir):
                await c.stop()
            await sim.stop()
            await listener.stop()


async def test_500_referrals_delivered_exactly_once_despite_faults(hub: Hub) -> None:
    envs = []
    for i in range(500):
        channel, dest = ("fhir", FHIR_DEST) if i % 2 == 0 else ("hl7v2", HL7_DEST)
        envs.append(
            hub.referral(f"R-bulk-{i:04d}", hub.person(f"bulk-{i % 120}"), channel=channel, destination=dest)
        )
    result = await hub.rt.log.append(envs)
    assert len(result.appended) == 500
    ids = {f"R-bulk-{i:04d}" for i in range(500)}

    async def all_final() -> bool:
        n = await hub.rt.pool.fetchval(
            f"SELECT count(*) FROM {hub.ledger.schema}.referral_deliveries WHERE referral_id LIKE 'R-bulk-%' "
            "AND state IN ('delivered', 'rejected', 'failed')"
        )
        return n == 500

    await wait_for(all_final, 150, "500 referrals to reach a final state")
    stats = hub.sim.stats()
    assert stats["duplicates"] == 0, stats
    assert hub.sim.received_referral_ids() >= ids
    injected = stats["faults_injected"]
    assert sum(injected.values()) > 20, injected  # the faults really happened
    assert stats["fhir"]["resends_deduplicated"] + stats["hl7"]["resends_deduplicated"] > 0, stats

    events = [e for e in await hub.referral_events() if e.data["referral_id"] in ids]
    kinds = Counter((e.data["referral_id"], e.type) for e in events)
    delivered = {rid for (rid, t) in kinds if t == "referral.delivered.v1"}
    assert delivered == ids
    assert all(n == 1 for (rid, t), n in kinds.items() if t == "referral.delivered.v1")
    assert not any(t in ("referral.rejected.v1", "referral.delivery_failed.v1") for (_, t) in kinds)
    retried = [e for e in events if e.type == "referral.delivered.v1" and e.data["attempts"] > 1]
    assert retried, "some deliveries needed retries"

    # The closed loop: EHR answers come back through the FHIR Task poller and the MLLP listener.
    async def answers() -> bool:
        evs = [e for e in await hub.referral_events() if e.data["referral_id"] in ids]
        done = {
            e.data["referral_id"] for e in evs if e.type in ("referral.completed.v1", "referral.declined.v1")
        }
        return len(done) >= 450

    await wait_for(answers, 180, "completed/declined answers for most referrals", interval=0.5)
    evs = [e for e in await hub.referral_events() if e.data["referral_id"] in ids]
    sources = {(e.type, e.source) for e in evs}
    assert ("referral.completed.v1", FHIR_DEST) in sources and ("referral.completed.v1", HL7_DEST) in sources
    assert ("referral.declined.v1", FHIR_DEST) in sources and ("referral.declined.v1", HL7_DEST) in sources
    assert Counter(e.id for e in evs).most_common(1)[0][1] == 1  # no event twice in the log


async def test_part2_referral_without_consent_is_held_and_never_sent(hub: Hub) -> None:
    person = hub.person("part2-person")
    held = [
        hub.referral("R-p2-fhir", person, channel="fhir", destination=FHIR_DEST, substance_use=True),
        hub.referral("R-p2-hl7", person, channel="hl7v2", destination=HL7_DEST, substance_use=True),
    ]
    await hub.rt.log.append(held)

    async def both_held() -> bool:
        evs = [e for e in await hub.referral_events() if e.subject == person]
        return {e.data["referral_id"] for e in evs if e.type == "referral.held_for_consent.v1"} == {
            "R-p2-fhir",
            "R-p2-hl7",
        }

    await wait_for(both_held, 30, "held_for_consent events in the person's stream")
    await asyncio.sleep(0.5)
    assert not ({"R-p2-fhir", "R-p2-hl7"} & hub.sim.received_referral_ids()), (
        "a Part 2 referral was disclosed"
    )
    row = await hub.ledger.get(FHIR_DEST, "R-p2-fhir")
    assert row is not None and row.state == "held" and row.attempts == 0

    # A consent naming only the FHIR clinic releases that referral and nothing else.
    consent = ConsentGranted(
        consent_id="C-p2-1",
        person=person,
        at=datetime.now(UTC) - timedelta(seconds=1),
        recipients=(FHIR_DEST,),
        scope=("part2",),
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    await hub.rt.log.append([new_event(consent, source="test/consents", record_id="C-p2-1")])

    async def released() -> bool:
        r = await hub.ledger.get(FHIR_DEST, "R-p2-fhir")
        return r is not None and r.state == "delivered"

    await wait_for(released, 30, "the consented referral to be delivered")
    assert "R-p2-fhir" in hub.sim.received_referral_ids()
    assert "R-p2-hl7" not in hub.sim.received_referral_ids()
    consents = hub.sim.fhir.resources.get("Consent", {}).values()
    assert any(c["identifier"][0]["value"] == "C-p2-1" for c in consents)

    # After revocation, a new Part 2 referral to the same clinic is held again.
    revoke = ConsentRevoked(consent_id="C-p2-1", person=person, at=datetime.now(UTC))
    await hub.rt.log.append([new_event(revoke, source="test/consents", record_id="C-p2-1")])
    await hub.rt.log.append(
        [hub.referral("R-p2-after", person, channel="fhir", destination=FHIR_DEST, substance_use=True)]
    )

    async def held_again() -> bool:
        r = await hub.ledger.get(FHIR_DEST, "R-p2-after")
        return r is not None and r.state == "held"

    await wait_for(held_again, 30, "the post-revocation referral to be held")
    assert "R-p2-after" not in hub.sim.received_referral_ids()


async def test_forged_consent_never_unlocks_a_held_part2_referral(hub: Hub) -> None:
    """Consent facts produced straight into the consent topic (no record MAC, a wrong one, one
    copied from a genuine consent, one under a key the hub does not accept) are quarantined
    by the delivery worker's consent view: the held Part 2 referral stays held and nothing
    is disclosed."""
    person = hub.person("forged-consent-person")
    await hub.rt.log.append(
        [hub.referral("R-forged", person, channel="fhir", destination=FHIR_DEST, substance_use=True)]
    )

    async def held() -> bool:
        r = await hub.ledger.get(FHIR_DEST, "R-forged")
        return r is not None and r.state == "held"

    await wait_for(held, 30, "the Part 2 referral to be held")
    topic = fact_topic(hub.rt.settings.kafka.topic_prefix, "consent")

    def grant(cid: str, who: str) -> Envelope:
        data = ConsentGranted(
            consent_id=cid,
            person=who,
            at=datetime.now(UTC) - timedelta(seconds=1),
            recipients=(FHIR_DEST,),
            scope=("part2",),
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        return new_event(data, source="test/consents", record_id=cid)

    # a genuine consent of someone else: its MAC is what the "copied" forgery reuses
    other = grant("C-other", hub.person("someone-else"))
    await hub.rt.log.append([other])
    records = [r async for r in scan_records(hub.rt.kafka, [topic], role="test")]
    other_headers = next(list(r.headers) for r in records if dict(r.headers)["ce_id"] == other.id.encode())
    view = hub.fhir.consents
    before = view.quarantine.count
    forgeries = ("none", "wrong", "copied", "unknown-key")
    for i, how in enumerate(forgeries):
        await produce_forged(hub.rt, topic, grant(f"C-forged-{i}", person), how, copy_from=other_headers)  # type: ignore[arg-type]

    async def judged() -> bool:
        await view.catch_up()
        return view.quarantine.count - before >= len(forgeries)

    await wait_for(judged, 30, "the consent view to quarantine every forged consent")
    assert view.book.of(person) == []
    # a genuine consent change makes the sender re-check held referrals: still held
    version = view.book.version
    await hub.rt.log.append([grant("C-other-2", hub.person("someone-else"))])

    async def rechecked() -> bool:
        await view.catch_up()
        return view.book.version > version

    await wait_for(rechecked, 30, "the consent view to apply the genuine consent")
    await hub.fhir.deliver(await hub.ledger.get(FHIR_DEST, "R-forged"))  # re-gated now: held again
    row = await hub.ledger.get(FHIR_DEST, "R-forged")
    assert row is not None and row.state == "held" and row.attempts == 0
    assert "R-forged" not in hub.sim.received_referral_ids()
    letters = await hub.rt.pool.fetchval(
        f"SELECT count(*) FROM {hub.rt.settings.core_schema}.deadletters "
        "WHERE source_family = 'quarantine' AND record_ref LIKE $1",
        f"{topic}[%",
    )
    assert letters >= len(forgeries)


async def test_malformed_inbound_hl7_gets_error_ack_and_dead_letter(hub: Hub) -> None:
    client = MllpClient("127.0.0.1", hub.listener.port, read_timeout=5)
    now = datetime.now(UTC)
    try:
        bad_inputs = {
            b"this is not HL7 at all": ("AR", None),
            b"MSH|^~\\&|EHR|X|COHUB|COHUB|20240101||ADT^A01|BAD-TYPE-1|P|2.5.1": ("AR", "BAD-TYPE-1"),
            build_rri_i12(
                control_id="BAD-RF1-6",
                ref_control_id="H1",
                referral_id="",
                person=hub.person("x"),
                status_code="A",
                now=now,
            ).encode(): ("AE", "BAD-RF1-6"),
            build_rri_i12(
                control_id="BAD-UNKNOWN",
                ref_control_id="H1",
                referral_id="R-never-sent",
                person=hub.person("x"),
                status_code="A",
                now=now,
            ).encode(): ("AE", "BAD-UNKNOWN"),
            build_rri_i12(
                control_id="BAD-STATUS",
                ref_control_id="H1",
                referral_id="R-bulk-0001",
                person=hub.person("x"),
                status_code="Q",
                now=now,
            ).encode(): ("AE", "BAD-STATUS"),
        }
        for raw, (code, cid) in bad_inputs.items():
            answer = (await client.exchange(raw)).decode()
            ack = parse_ack(answer, cid or "UNKNOWN")
            assert ack.code == code, (raw[:40], answer)
            assert "ERR|" in answer and ack.error_code, answer
            assert ack.text, "the ACK says why"
        # The listener keeps serving on the same connection: a good answer is accepted.
        await hub.rt.log.append(
            [hub.referral("R-inbound-ok", hub.person("inbound"), channel="hl7v2", destination=HL7_DEST)]
        )

        async def delivered() -> bool:
            r = await hub.ledger.get(HL7_DEST, "R-inbound-ok")
            return r is not None and r.state == "delivered"

        await wait_for(delivered, 30, "R-inbound-ok delivered")
        good = build_rri_i12(
            control_id="GOOD-1",
            ref_control_id="H1",
            referral_id="R-inbound-ok",
            person=hub.person("inbound"),
            status_code="X",
            now=now,
        ).encode()
        assert parse_ack((await client.exchange(good)).decode(), "GOOD-1").code == "AA"
    finally:
        await client.close()
    rows = await hub.rt.pool.fetch(
        f"SELECT record_ref, reason, stage FROM {hub.rt.settings.core_schema}.deadletters "
        "WHERE source = 'ehr/mllp'"
    )
    refs = {r["record_ref"] for r in rows}
    assert {"BAD-TYPE-1", "BAD-RF1-6", "BAD-UNKNOWN", "BAD-STATUS"} <= refs, rows
    assert all(r["stage"] == "inbound" and r["reason"] for r in rows)
    evs = [e for e in await hub.referral_events() if e.data["referral_id"] == "R-inbound-ok"]
    assert any(e.type == "referral.cancelled.v1" and e.data["source_status"] == "X" for e in evs)


async def test_crash_between_send_and_ack_never_duplicates(hub: Hub) -> None:
    """A worker sent the referral and died before recording the answer: the ledger says
    ``sending`` with one attempt. The next sender resends the identical message; the EHR
    keeps one referral and the log gets one ``delivered``."""
    from connectors.referrals.consent import Allow
    from connectors.referrals.ledger import LedgerRow

    before = hub.sim.stats()
    for worker, channel, dest, rid in (
        (hub.fhir, "fhir", FHIR_DEST, "R-crash-fhir"),
        (hub.hl7, "hl7v2", HL7_DEST, "R-crash-hl7"),
    ):
        env = hub.referral(rid, hub.person("crash"), channel=channel, destination=dest)
        req = env.payload()
        row = LedgerRow(
            seq=0,
            destination=dest,
            referral_id=rid,
            channel=channel,
            person=req.person,
            request_event_id=env.id,
            request=env,
            state="sending",
            attempts=1,
            hold_seq=0,
            message_id=None,
            remote_id=None,
            last_error=None,
        )
        rendered = worker.transport.render(await worker._disclosure(row, req, Allow()))  # type: ignore[arg-type]
        for _ in range(20):  # the "crashed" worker's send (the simulator may inject faults)
            if (await worker.transport.send(dest, rendered)).verdict == "accepted":
                break
        assert rid in hub.sim.received_referral_ids()
        await hub.rt.pool.execute(
            f"""INSERT INTO {hub.ledger.schema}.referral_deliveries
                (destination, referral_id, channel, person, request_event_id, request, state, attempts,
                 message_id)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'sending', 1, $7)""",
            dest,
            rid,
            channel,
            req.person,
            env.id,
            env.model_dump_json(),
            rendered.message_id,
        )
        await hub.rt.log.append([env])  # the intake finds the row already queued

    async def both_delivered() -> bool:
        rows = [
            await hub.ledger.get(d, r) for d, r in ((FHIR_DEST, "R-crash-fhir"), (HL7_DEST, "R-crash-hl7"))
        ]
        return all(r is not None and r.state == "delivered" for r in rows)

    await wait_for(both_delivered, 30, "the interrupted deliveries to complete")
    after = hub.sim.stats()
    assert after["duplicates"] == 0
    resent = (
        after["fhir"]["resends_deduplicated"]
        + after["hl7"]["resends_deduplicated"]
        - before["fhir"]["resends_deduplicated"]
        - before["hl7"]["resends_deduplicated"]
    )
    assert resent >= 2
    evs = [
        e
        for e in await hub.referral_events()
        if e.data["referral_id"] in ("R-crash-fhir", "R-crash-hl7") and e.type == "referral.delivered.v1"
    ]
    assert sorted(e.data["referral_id"] for e in evs) == ["R-crash-fhir", "R-crash-hl7"]
    assert all(e.data["attempts"] >= 2 for e in evs)


async def test_historical_referrals_keep_their_own_time_end_to_end(hub: Hub) -> None:
    """Referrals of a simulated past month (as in ``hub demo``): a worker with
    ``clock: relative`` stamps the outcome seconds after the referral, and the EHR's answers
    (RRI^I12 MSH-7, Task.lastModified) carry the clinic's own times — hours to days after the
    referral — which the listener and the Task poller keep as the events' times."""
    t0 = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    auth = AuthConfig(
        type="client_credentials", token_url=hub.sim.token_url, client_id="cohub", client_secret="sim-secret"
    )
    cfg = WorkerConfig(retry=FAST_RETRY, clock="relative", requesters={"team-1": "Co-responder team"})
    # Destinations of their own, delivered by calling the workers directly (they are not
    # started, so they do not join the running workers' consumer groups).
    hdest = {
        "clinic-hl7-hist": Hl7Destination(
            display="H", host="127.0.0.1", port=hub.sim.mllp_port, read_timeout_s=0.3, connect_timeout_s=1.0
        )
    }
    fdest = {
        "clinic-fhir-hist": FhirDestination(
            display="F", base_url=hub.sim.fhir_base_url, auth=auth, timeout_s=0.3
        )
    }
    deps = WorkerDeps.from_runtime(hub.rt)
    workers = [
        ("hl7v2", "R-hist-hl7", DeliveryWorker(deps, Hl7Transport(hdest), hdest, cfg)),  # type: ignore[arg-type]
        ("fhir", "R-hist-fhir", DeliveryWorker(deps, FhirTransport(fdest), fdest, cfg)),  # type: ignore[arg-type]
    ]
    person = hub.person("historical")
    try:
        for channel, rid, worker in workers:
            dest = next(iter(worker.destinations))
            live = hub.referral(rid, person, channel=channel, destination=dest).payload()
            req = live.model_copy(update={"at": t0})
            env = new_event(req, source="test/referrals", record_id=rid)
            assert await hub.ledger.enqueue(env, req)
            row = await hub.ledger.get(dest, rid)
            assert row is not None
            assert await worker.deliver(row) == "delivered"
    finally:
        for _, _, worker in workers:
            await worker.transport.close()

    async def answered() -> list[Envelope]:
        evs = [
            e for e in await hub.referral_events() if e.data["referral_id"] in ("R-hist-hl7", "R-hist-fhir")
        ]
        done = {
            e.data["referral_id"] for e in evs if e.type in ("referral.completed.v1", "referral.declined.v1")
        }
        return evs if len(done) == 2 else []

    evs = await wait_for(answered, 180, "the EHR's final answers to both historical referrals", interval=0.3)
    at = {(e.data["referral_id"], e.type): datetime.fromisoformat(e.data["at"]) for e in evs}
    for rid in ("R-hist-hl7", "R-hist-fhir"):
        delivered = at[(rid, "referral.delivered.v1")]
        assert t0 <= delivered <= t0 + timedelta(seconds=60), (rid, delivered)
        if (rid, "referral.declined.v1") in at:
            assert timedelta(hours=2) <= at[(rid, "referral.declined.v1")] - t0 <= timedelta(hours=72)
            continue
        assert timedelta(hours=2) <= at[(rid, "referral.accepted.v1")] - t0 <= timedelta(days=20)
        completed = at[(rid, "referral.completed.v1")]
        assert timedelta(days=3) <= completed - t0 <= timedelta(days=20), (rid, completed)
        assert at[(rid, "referral.accepted.v1")] <= completed
