"""Re-driving case dead letters maps with the component's configured mapping (the defect of
issue 10 on the case side: the redriver built its mapper with the default person namespace
``mpi:county`` and no agency, so a re-driven record got another person pseudonym than the
same record read live, and a record naming its CAD incident by number was rejected for want
of an agency). Real case components (REST poller and signed webhook), the registered
re-driver, Kafka and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

import connectors.cases.mapping as case_mapping
from connectors.cases.mapping import CaseMapping
from connectors.cases.webhook import signed_headers
from connectors.components import CaseRestPollerConfig, CaseWebhookConfig, case_rest_poller, case_webhook
from connectors.registry import REDRIVERS
from hub.devtools.simulate.servers import FeedState, cases_app, serve
from hub.kernel.deadletters import DeadLetterRow, DeadLetterStore, redrive
from hub.kernel.identity import pseudonymize
from hub.kernel.keys import secret_bytes
from hub.kernel.runtime import Runtime
from schemas.envelope import Envelope
from schemas.topics import fact_topic
from tests.integration.waiting import wait_for

NAMESPACE, AGENCY, CAD_NUMBER = "mpi:other", "X", "240610001"


def opened(tag: str, n: int, occurred_at: str) -> dict[str, Any]:
    """A case opening whose person has no ``system`` (→ the component's namespace) and whose
    incident is a bare CAD number (→ the component's agency)."""
    return {
        "record_id": f"r{n}-{tag}", "record_type": "case_opened", "case_id": f"c{n}-{tag}",
        "person": {"id": f"MPI-{tag}"}, "occurred_at": occurred_at, "version": 1,
        "program": "county-coresponder", "cad_incident_number": CAD_NUMBER,
        "updated_at": f"2024-03-02T10:00:0{n}Z",
    }


def records(tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A good record and one the mapper rejects (a time without UTC offset)."""
    return opened(tag, 1, "2024-03-02T10:00:00+00:00"), opened(tag, 2, "2024-03-02T11:00:00")


async def case_facts(rt: Runtime, source: str) -> dict[str, Envelope]:
    """The case facts of ``source`` in the log, by case id."""
    out = {}
    async for ev in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, "case")]):
        if ev.envelope.source == source:
            out[ev.envelope.data["case_id"]] = ev.envelope
    return out


async def via_poller(rt: Runtime, name: str, source: str, tag: str) -> None:
    state = FeedState()
    for rec in records(tag):
        state.publish(rec["record_id"], rec)
    server, port = await serve(cases_app(state))
    component = case_rest_poller(rt, CaseRestPollerConfig(
        name=name, url=f"http://127.0.0.1:{port}/api/v1/case-records", source=source,
        namespace=NAMESPACE, agency=AGENCY, interval=0.05,
    ))

    async def done() -> bool:
        totals = component.runner.totals
        return totals.dead_lettered >= 1 and totals.appended >= 1

    await component.start()
    try:
        await wait_for(done, what="one record appended and one dead-lettered")
    finally:
        await component.stop()
        await server.cleanup()


async def via_webhook(rt: Runtime, name: str, source: str, tag: str) -> None:
    component = case_webhook(rt, CaseWebhookConfig(
        name=name, port=0, source=source, namespace=NAMESPACE, agency=AGENCY,
    ))
    body = json.dumps({"records": list(records(tag))}).encode()
    headers = signed_headers(secret_bytes(rt.settings, "webhook.key"), f"dlv-{tag}", body)
    await component.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{component.port}/webhooks/cases"
            async with http.post(url, data=body, headers=headers) as resp:
                answer = await resp.json()
                assert resp.status == 202 and answer["appended"] == 1 and answer["dead_lettered"] == 1, answer
    finally:
        await component.stop()


def read_naive_times_as_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping fix the dead letter waited for (as a hub release would ship it): a time
    without UTC offset is read as UTC instead of being rejected."""
    strict = case_mapping._time

    def lenient(rec: dict[str, Any], name: str) -> datetime:
        value = str(rec.get(name) or "")
        if value and datetime.fromisoformat(value).tzinfo is None:
            rec = {**rec, name: value + "+00:00"}
        return strict(rec, name)

    monkeypatch.setattr(case_mapping, "_time", lenient)


@pytest.mark.parametrize("ingest", [via_poller, via_webhook], ids=["case-rest-poller", "case-webhook"])
async def test_a_redriven_case_record_maps_with_the_components_namespace_and_agency(
    log_rt: Runtime, monkeypatch: pytest.MonkeyPatch, ingest: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"it-other-{tag}"
    source = f"cases/{name}"
    await ingest(log_rt, name, source, tag)
    good, bad = records(tag)

    store = DeadLetterStore(log_rt.pool, log_rt.settings.core_schema)
    (letter,) = await store.list(source=source)
    mapping = CaseMapping(source=source, namespace=NAMESPACE, agency=AGENCY)
    assert letter.record.profile == mapping.ref  # the dead letter names the component's mapping

    read_naive_times_as_utc(monkeypatch)
    row = await store.get(letter.record.id)
    assert isinstance(row, DeadLetterRow)
    outcome = await redrive(log_rt, row, REDRIVERS)
    assert outcome.ok and outcome.appended == 1, outcome

    events = await case_facts(log_rt, source)
    live, redriven = events[good["case_id"]], events[bad["case_id"]]
    person = pseudonymize(log_rt.pseudonym_key, NAMESPACE, f"MPI-{tag}")
    assert live.data["person"] == person and redriven.data["person"] == person
    assert redriven.data["person"] != pseudonymize(log_rt.pseudonym_key, "mpi:county", f"MPI-{tag}")
    assert live.data["incident_id"] == redriven.data["incident_id"] == f"{AGENCY}:{CAD_NUMBER}"
    assert datetime.fromisoformat(redriven.data["at"]) == datetime(2024, 3, 2, 11, tzinfo=UTC)
    assert (await store.get(letter.record.id)).status == "redriven"  # type: ignore[union-attr]
