"""Refused and failed person-level reads leave an access-log row (and an audit-topic record)
on the real PostgreSQL and broker: who (sub, or ``anonymous``), what, why refused — never
the caller's free text — while the API's answers stay what they were."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.entry.api.roles import Role
from hub.kernel.audit import AccessLog, AuditTopic, audit_table_values, compare_audit
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_io import scan_records
from hub.kernel.settings import Settings
from schemas.topics import audit_topic as audit_topic_name
from tests.integration.hub.entry.scenario import incident

pytestmark = pytest.mark.integration

NAME = "john-q-public-1970"  # what a careless caller might type into the URL or the purpose


def bearer(issuer: DevIssuer, role: Role, program: str | None = None) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub=f"t-{role.value}", role=role, program=program)}


async def last_row(access_log: AccessLog) -> dict[str, Any]:
    return (await access_log.recent(limit=1))[0]


@pytest.mark.parametrize(
    ("case", "status", "who", "reason"),
    [
        ("no token", 401, ("anonymous", "none"), "no token"),
        ("bad token", 401, ("anonymous", "none"), "bad token"),
        ("no purpose", 400, ("t-admin", "admin"), "no purpose"),
        ("bad purpose", 400, ("t-admin", "admin"), "bad purpose"),
        ("bad id", 422, ("t-admin", "admin"), "bad id"),
    ],
)
async def test_a_refused_read_leaves_a_row_and_the_same_answer(
    client: httpx.AsyncClient,
    issuer: DevIssuer,
    access_log: AccessLog,
    api_facts: dict[str, str],
    case: str,
    status: int,
    who: tuple[str, str],
    reason: str,
) -> None:
    person = api_facts["ann"]
    path, headers, params = f"/v1/persons/{person}/timeline", bearer(issuer, Role.ADMIN), {"purpose": "audit"}
    if case == "no token":
        headers = {}
    elif case == "bad token":
        headers = {"Authorization": "Bearer " + NAME}
    elif case == "no purpose":
        params = {}
    elif case == "bad purpose":
        params = {"purpose": NAME}
    else:
        path = f"/v1/persons/{NAME}/timeline"
    before = await access_log.count()
    resp = await client.get(path, headers=headers, params=params)
    assert resp.status_code == status, resp.text
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
    if case == "bad id":  # FastAPI's own validation answer, unchanged
        assert resp.json()["detail"][0]["type"] == "string_pattern_mismatch"
    assert await access_log.count() == before + 1
    row = await last_row(access_log)
    assert (row["sub"], row["role"]) == who
    assert (row["action"], row["outcome"], row["reason"]) == ("person_timeline", "refused", reason)
    assert row["subject"] == ("<invalid>" if case == "bad id" else person)
    assert NAME not in str(row)  # the caller's free text is never copied into the log


async def test_a_role_that_may_not_read_is_denied_with_the_reason(
    client: httpx.AsyncClient, issuer: DevIssuer, access_log: AccessLog, api_facts: dict[str, str]
) -> None:
    resp = await client.get(
        f"/v1/incidents/{incident(1)}/timeline",
        headers=bearer(issuer, Role.ANALYST),
        params={"purpose": "operations"},
    )
    assert resp.status_code == 403
    row = await last_row(access_log)
    assert (row["sub"], row["outcome"], row["action"]) == ("t-analyst", "denied", "incident_timeline")
    assert row["reason"] == "role analyst may not read incident_timeline"


async def test_refusals_of_other_routes_are_not_person_level(
    client: httpx.AsyncClient, access_log: AccessLog
) -> None:
    before = await access_log.count()
    assert (await client.get("/v1/pipeline")).status_code == 401
    assert await access_log.count() == before


class FailingReadModels(PostgresReadModels):
    """The real read models, except that a person's timeline cannot be read."""

    async def person_timeline(self, person: str) -> list[dict[str, Any]]:
        raise RuntimeError("the read model is broken")


async def test_a_failed_read_is_logged_as_error(
    settings: Settings,
    runtime_pool: asyncpg.Pool,
    access_log: AccessLog,
    issuer: DevIssuer,
    api_facts: dict[str, str],
) -> None:
    app = create_app(
        settings,
        FailingReadModels(settings, runtime_pool),
        access_log,
        TokenVerifier(settings, jwks=issuer.jwks()),
        dev_issuer=issuer,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        resp = await c.get(
            f"/v1/persons/{api_facts['ann']}/timeline",
            headers=bearer(issuer, Role.ADMIN),
            params={"purpose": "audit"},
        )
    assert resp.status_code == 500
    row = await last_row(access_log)
    assert (row["sub"], row["outcome"], row["reason"]) == ("t-admin", "error", "read failed: RuntimeError")


async def test_every_row_is_on_the_audit_topic(
    settings: Settings, client: httpx.AsyncClient, access_log: AccessLog, audit_topic: AuditTopic
) -> None:
    assert (await client.get("/v1/persons/psn_" + "1" * 32 + "/timeline")).status_code == 401
    on_topic = [
        (r.offset, r.key, r.value)
        async for r in scan_records(
            KafkaClients(settings.kafka), [audit_topic_name(settings.kafka.topic_prefix)], role="test"
        )
    ]
    table = await audit_table_values(access_log.pool, settings.core_schema)
    assert table and compare_audit(table, on_topic) == []
