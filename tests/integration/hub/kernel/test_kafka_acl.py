"""Transport security of the log (issue 12, item 1) on the real SASL_SSL broker: a client
without credentials (plain TCP, TLS alone, a wrong password) reaches no topic; each
principal of the role matrix (:mod:`hub.kernel.kafka_acl`) can do what its role needs and
nothing else — a connector cannot write the consent topic nor read the outcome topic, an
analyst reads the outcome topic and nothing else;
the hub's own processes run under their principals (a CAD connector's runtime appends
dispatch facts, the projector folds them and publishes outcomes); and a record produced
with a connector's valid credentials but without a valid MAC is quarantined, not folded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from hub.bootstrap import open_runtime
from hub.kernel.identity import pseudonymize
from hub.kernel.kafka import KafkaClients
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from projections import queries
from projections.projector import project
from schemas.case import CaseOpened
from schemas.dispatch import CallReceived
from schemas.envelope import Envelope, new_event
from schemas.topics import catalogue, fact_topic, outcome_topic
from tests.integration.forge import produce_forged

pytestmark = pytest.mark.integration

TIMEOUT_MS = 5000


def as_principal(settings: Settings, principal: str) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"principal": principal})})


async def can_write(clients: KafkaClients, topic: str) -> bool:
    """Whether the principal of ``clients`` may produce to ``topic`` (a refusal is an
    authorization error, never a timeout)."""
    producer = clients.producer("acl-test", request_timeout_ms=TIMEOUT_MS)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"probe", key=b"probe")
        return True
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):  # no write right anywhere
        return False
    finally:
        await producer.stop()


async def can_read(clients: KafkaClients, topic: str) -> bool:
    """Whether the principal of ``clients`` gets the records of ``topic``'s first partition
    (each tested topic holds one, written by the admin): refused, or hidden from the
    principal's metadata, is False."""
    consumer = clients.consumer("acl-test", request_timeout_ms=TIMEOUT_MS)
    tp = TopicPartition(topic, 0)
    try:
        await consumer.start()
        consumer.assign([tp])
        async with asyncio.timeout(3):
            while True:
                if (await consumer.getmany(tp, timeout_ms=500)).get(tp):
                    return True
    except (TopicAuthorizationFailedError, TimeoutError):
        return False
    finally:
        await consumer.stop()


async def write_probes(clients: KafkaClients, topics: list[str]) -> None:
    """One record in partition 0 of each topic, as the admin."""
    producer = clients.producer("acl-test")
    await producer.start()
    try:
        for topic in topics:
            await producer.send_and_wait(topic, b"probe", key=b"probe", partition=0)
    finally:
        await producer.stop()


async def test_no_credentials_no_topic(log_rt: Runtime) -> None:
    """Plain TCP, TLS without SASL and a wrong password all fail before any topic."""
    s = log_rt.settings.kafka
    topic = fact_topic(s.topic_prefix, "consent")
    tls = KafkaClients(s).ssl_context()
    attempts = {
        "plaintext": {},
        "tls only": {"security_protocol": "SSL", "ssl_context": tls},
        "wrong password": {
            "security_protocol": "SASL_SSL",
            "ssl_context": tls,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "admin",
            "sasl_plain_password": "not-the-password",
        },
    }
    for name, options in attempts.items():
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, request_timeout_ms=TIMEOUT_MS, **options)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=s.bootstrap, request_timeout_ms=TIMEOUT_MS, **options
        )
        for client in (producer, consumer):
            with pytest.raises(KafkaError):  # KafkaConnectionError, or the SASL authentication error
                await asyncio.wait_for(client.start(), 30)
            await client.stop()
        assert name  # every variant was refused


async def test_connector_credentials_write_their_family_only(log_rt: Runtime) -> None:
    prefix = log_rt.settings.kafka.topic_prefix
    cad = KafkaClients(log_rt.settings.kafka).as_principal("connector-cad")
    cases = KafkaClients(log_rt.settings.kafka).as_principal("connector-cases")
    await write_probes(log_rt.kafka, [outcome_topic(prefix), fact_topic(prefix, "case")])
    assert await can_write(cad, fact_topic(prefix, "dispatch"))
    assert await can_write(cases, fact_topic(prefix, "case"))
    for clients in (cad, cases):
        assert not await can_write(clients, fact_topic(prefix, "consent"))
        assert not await can_write(clients, outcome_topic(prefix))
        assert not await can_read(clients, outcome_topic(prefix))
        assert not await can_read(clients, fact_topic(prefix, "case"))
    assert not await can_write(cad, fact_topic(prefix, "case"))  # another connector's family


async def test_analyst_reads_the_outcome_topic_only(log_rt: Runtime) -> None:
    prefix = log_rt.settings.kafka.topic_prefix
    analyst = KafkaClients(log_rt.settings.kafka).as_principal("analyst")
    names = [spec.name for spec in catalogue(prefix)]
    await write_probes(log_rt.kafka, names)
    readable = await asyncio.gather(*(can_read(analyst, name) for name in names))
    assert [n for n, ok in zip(names, readable, strict=True) if ok] == [outcome_topic(prefix)]
    assert not await can_write(analyst, outcome_topic(prefix))


def incident(incident_id: str) -> Envelope:
    """A CAD call (``agency:number``)."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    data = CallReceived(
        incident_id=incident_id,
        agency="acl",
        cad_number=incident_id.split(":")[1],
        at=at,
        source_timezone="America/Los_Angeles",
        call_type_initial="WELFARE CHECK",  # the source's words; the projections classify
    )
    return new_event(data, source="test/cad", record_id=incident_id)


async def test_processes_run_under_their_principals_and_forged_records_are_quarantined(
    fresh_runtime: Callable[[], AbstractAsyncContextManager[Runtime]],
) -> None:
    """A CAD connector's runtime appends dispatch facts; a record produced with the CASES
    connector's valid credentials but no MAC reaches the case topic (its ACL allows it) and
    the projector, running as ``projector``, quarantines it and folds only the real facts."""
    async with fresh_runtime() as admin_rt:
        await _run_as_principals(admin_rt)


async def _run_as_principals(log_rt: Runtime) -> None:
    base = log_rt.settings
    prefix = base.kafka.topic_prefix
    schema = f"{prefix}_acl"
    person = pseudonymize(log_rt.pseudonym_key, "test:acl", "forged-case")
    async with open_runtime(as_principal(base, "connector-cad")) as cad:
        await cad.log.append([incident("acl:1"), incident("acl:2")])
    forged = new_event(
        CaseOpened(case_id="CASE-forged", person=person, at=datetime.now(UTC), program="program-x"),
        source="test/cases",
        record_id="CASE-forged",
    )
    await produce_forged(
        log_rt,
        fact_topic(prefix, "case"),
        forged,
        "none",
        clients=KafkaClients(base.kafka).as_principal("connector-cases"),
    )
    async with open_runtime(as_principal(base, "projector")) as projector:
        stats = await project(projector, schema=schema, until_caught_up=True)
    assert stats.quarantined == 1 and stats.new_facts == 2
    reader = queries.ReadModelReader.from_settings(log_rt.pool, base, schema=schema)
    assert await reader.incident_summary("acl:1") is not None  # the connector's real facts folded
    assert await reader.person_timeline(person) == []  # the forged case did not
