"""Fixtures for the read-API tests: the scenario's facts appended to the session's real
log, folded by the real projections into PostgreSQL, and the real API (ASGI, in-process)
over them with the real access log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from hub.bootstrap import migrate_all, open_runtime
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.audit import AccessLog, AuditTopic
from hub.kernel.keys import secret_bytes
from hub.kernel.settings import Settings
from projections.projector import project
from tests.integration.hub.entry.scenario import people, scenario


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_facts(settings: Settings, topics: object, pg_pool: asyncpg.Pool) -> dict[str, str]:
    """Append the scenario and project it; returns the scenario's pseudonyms by name."""
    async with open_runtime(settings) as rt:
        await rt.log.append(scenario(rt.pseudonym_key))
        await project(rt, until_caught_up=True)
    return people(secret_bytes(settings, "pseudonym.key"))


@pytest.fixture(scope="session")
def issuer(settings: Settings) -> DevIssuer:
    return DevIssuer.open(settings)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def access_log(
    settings: Settings, pg_pool: asyncpg.Pool, runtime_pool: asyncpg.Pool, audit_topic: AuditTopic
) -> AccessLog:
    """The access log as the API writes it: migrated by the owner, appended by the runtime role."""
    await migrate_all(pg_pool, settings)
    return AccessLog(runtime_pool, settings.core_schema, audit_topic)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(
    settings: Settings,
    runtime_pool: asyncpg.Pool,
    api_facts: dict[str, str],
    issuer: DevIssuer,
    access_log: AccessLog,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings,
        PostgresReadModels(settings, runtime_pool),
        access_log,
        TokenVerifier(settings, jwks=issuer.jwks()),
        dev_issuer=issuer,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c
