"""Areas of need through the real API on real PostgreSQL (and the real publisher on Kafka):
beats and sectors of a Seattle-style feed (:mod:`.areas_scenario`) in the report, calls for
service and rates per 1,000 calls and residents, the county's map, and the analyst's released
month with its beats — every count hand-computed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.entry.api.roles import Role
from hub.kernel.audit import AccessLog
from hub.kernel.settings import Settings
from tests.integration.hub.entry.api.routes.areas_scenario import BEATS, release_may, seattle_settings

pytestmark = pytest.mark.integration


def token(issuer: DevIssuer, role: Role) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub=f"test-{role.value}", role=role, program=None)}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def area_api(
    settings: Settings, pg_pool: asyncpg.Pool, access_log: AccessLog, issuer: DevIssuer, tmp_path_factory: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    s = await seattle_settings(settings, pg_pool, tmp_path_factory.mktemp("areas"))
    app = create_app(s, PostgresReadModels(s, pg_pool), access_log, TokenVerifier(s, jwks=issuer.jwks()),
                     dev_issuer=issuer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c, s


def rows_of(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {r["group"]: r["metrics"] for r in doc["outcomes"]["rows"] if r["group_kind"] == kind}


async def test_report_by_beat_and_sector_with_rates(area_api: tuple[httpx.AsyncClient, Settings],
                                                    issuer: DevIssuer) -> None:
    client, _ = area_api
    resp = await client.get("/v1/reports/outcomes?by=beat", headers=token(issuer, Role.AUDITOR))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["headline"]["calls"]["value"] == 30 + 25 + 4 + 40 + 24 == 123
    assert doc["outcomes"]["total"]["all_calls"]["value"] == 123 + 70
    beats = rows_of(doc, "beat")
    assert set(beats) == set(BEATS)
    assert beats["K1"]["calls"]["value"] == 30 and beats["M1"]["calls"]["value"] == 40
    assert beats["K3"]["calls"]["value"] is None  # 4 calls
    assert sum(beats[b]["calls"]["value"] is None for b in BEATS) >= 2  # and a complement
    assert beats["K1"]["all_calls"]["value"] == 100
    assert beats["K1"]["calls"]["rate_per_1000_calls"] == 300.0  # 30 of 100 calls for service
    assert beats["K1"]["calls"]["rate_per_1000_residents"] == round(30_000 / 5234, 1) == 5.7
    assert beats["M1"]["calls"]["rate_per_1000_residents"] == 10.0  # 40 per 4,000 residents
    assert beats["K3"]["calls"]["rate_per_1000_residents"] is None
    assert doc["population"] == {"source": "hand-made test table", "year": 2019, "areas": 2}
    sectors = rows_of((await client.get("/v1/reports/outcomes?by=sector",
                                        headers=token(issuer, Role.AUDITOR))).json(), "sector")
    assert {k: v["calls"]["value"] for k, v in sectors.items()} == {"K": 59, "M": 64}


async def test_map_of_the_beats(area_api: tuple[httpx.AsyncClient, Settings], issuer: DevIssuer) -> None:
    client, _ = area_api
    resp = await client.get("/v1/maps/beat", headers=token(issuer, Role.ANALYST))
    assert resp.status_code == 200, resp.text
    m = resp.json()
    assert sorted(a["area"] for a in m["areas"]) == sorted(BEATS) and m["unmapped"] == []
    assert (await client.get("/v1/maps/precinct", headers=token(issuer, Role.ANALYST))).status_code == 404
    assert (await client.get("/v1/maps/beat")).status_code == 401


async def test_analysts_get_the_released_month_with_its_beats(
    area_api: tuple[httpx.AsyncClient, Settings], issuer: DevIssuer, pg_pool: asyncpg.Pool, topics: object
) -> None:
    client, s = area_api
    await release_may(s, pg_pool)
    resp = await client.get("/v1/reports/outcomes", headers=token(issuer, Role.ANALYST))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["release"] == "2019-05.r1" and doc["population"]["source"] == "hand-made test table"
    beats, sectors = rows_of(doc, "beat"), rows_of(doc, "sector")
    assert beats["K1"]["calls"]["value"] == 30 and beats["K3"]["calls"]["value"] is None
    assert beats["K1"]["calls"]["rate_per_1000_calls"] == 300.0
    assert {k: v["calls"]["value"] for k, v in sectors.items()} == {"K": 59, "M": 64}
    assert rows_of(doc, "precinct")["W"]["calls"]["value"] == 123
    # no analyst can ask for a beat over a date range (it could be subtracted)
    refused = await client.get("/v1/reports/outcomes?by=beat", headers=token(issuer, Role.ANALYST))
    assert refused.status_code == 403
    dash = (await client.get("/v1/dashboard", headers=token(issuer, Role.ANALYST))).json()
    (panel,) = dash["areas"]
    assert panel["grain"] == "beat" and panel["map"] == "/v1/maps/beat"
    shown = {r["area"]: r["calls"] for r in panel["rows"]}
    assert shown["K1"] == 30 and shown["K3"] is None
    assert {r["area"] for r in panel["rows"] if r["suppressed"]} >= {"K3"}
    assert all(c["group"] not in BEATS for c in [{"group": g} for g in dash["by_area"]["categories"]])
