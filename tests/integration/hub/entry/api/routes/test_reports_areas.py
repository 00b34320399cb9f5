"""Areas of need through the real API on real PostgreSQL (and the real publisher on Kafka):
beats and sectors of a Seattle-style feed in the report, calls for service and rates per
1,000 calls and residents, the county's map, and the analyst's released month with its
beats — every count hand-computed.

The feed: May 2019, precinct W; sector K: beat K1 30 behavioral-health calls (and 70 other
calls), K2 25, K3 4; sector M: M1 40, M2 24 (no area of 11 to 20 calls: the zero-cell rule stays out). K3's 4 calls are withheld, and so is a
complement (K3 = K - K1 - K2 otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from hub.kernel.db import apply_sets
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import PROJECT_ROOT, AreaMapSettings, AreaSettings, Settings
from projections.publisher import OutcomePublisher
from projections.store import READ_MODEL_MIGRATIONS

pytestmark = pytest.mark.integration

MAY = datetime(2019, 5, 10, 19, 0, tzinfo=UTC)  # a month no other test publishes
BEATS = {"K1": ("K", 30, 70), "K2": ("K", 25, 0), "K3": ("K", 4, 0), "M1": ("M", 40, 0), "M2": ("M", 24, 0)}
POPULATION = '''grain,area,population,source,year
beat,K1,5234,hand-made test table,2019
beat,M1,4000,hand-made test table,2019
'''


def token(issuer: DevIssuer, role: Role) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub=f"test-{role.value}", role=role, program=None)}


async def _feed(pool: asyncpg.Pool, schema: str) -> None:
    await apply_sets(pool, [READ_MODEL_MIGRATIONS], "read_models", schema)
    rows = []
    for beat, (sector, bh, other) in BEATS.items():
        for i in range(bh + other):
            rows.append((f"areas:{beat}:{i}", MAY + timedelta(minutes=i), i < bh, sector, beat))
    await pool.executemany(
        f'INSERT INTO "{schema}".incident_summary (incident_id, received_at, call_category,'
        " behavioral_health, precinct, sector, beat, outcome, referral_made, connected_to_services,"
        " co_responder, persons, fact_count)"
        " VALUES ($1, $2, 'crisis', $3, 'W', $4, $5, 'no_enforcement', false, false, false, '{}', 1)",
        rows,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def area_api(
    settings: Settings, pg_pool: asyncpg.Pool, access_log: AccessLog, issuer: DevIssuer, tmp_path_factory: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    schema = f"{settings.postgres.schema_}_areas"
    await pg_pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await _feed(pg_pool, schema)
    pop: Path = tmp_path_factory.mktemp("areas") / "population.csv"
    pop.write_text(POPULATION, encoding="utf-8")
    areas = AreaSettings(population=pop, maps=[AreaMapSettings(
        grain="beat", geojson=PROJECT_ROOT / "tests" / "data" / "areas" / "seattle_beats.geojson",
        id_property="beat")])
    s = settings.model_copy(update={"postgres": settings.postgres.model_copy(update={"schema_": schema}),
                                    "areas": areas})
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
    publisher = OutcomePublisher(s, pg_pool, s.postgres.schema_, KafkaClients(s.kafka),
                                 clock=lambda: datetime(2019, 7, 1, tzinfo=UTC))
    await publisher.start()
    try:
        await publisher.publish()
    finally:
        await publisher.stop()
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
