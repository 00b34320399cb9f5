"""A Seattle-style feed for the areas-of-need tests (integration and the dashboard's map in
the browser): May 2019, precinct W; sector K: beat K1 30 behavioral-health calls (and 70 other
calls), K2 25, K3 4; sector M: M1 40, M2 24 — no area of 11 to 20 calls, so the zero-cell
rule stays out of the hand computation. K3's 4 calls are withheld, and so is a complement
(K3 = K - K1 - K2 otherwise). The county's map is the hand-made
``tests/data/areas/seattle_beats.geojson`` (not SPD's boundaries); residents of K1 and M1 from a
hand-made table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from hub.kernel.db import apply_sets
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import PROJECT_ROOT, AreaMapSettings, AreaSettings, Settings
from projections.publisher import OutcomePublisher
from projections.store import READ_MODEL_MIGRATIONS

MAY = datetime(2019, 5, 10, 19, 0, tzinfo=UTC)  # a month no other test publishes
BEATS = {"K1": ("K", 30, 70), "K2": ("K", 25, 0), "K3": ("K", 4, 0), "M1": ("M", 40, 0), "M2": ("M", 24, 0)}
POPULATION = '''grain,area,population,source,year
beat,K1,5234,hand-made test table,2019
beat,M1,4000,hand-made test table,2019
'''


async def seattle_feed(pool: asyncpg.Pool, schema: str) -> None:
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




async def seattle_settings(settings: Settings, pool: asyncpg.Pool, directory: Path) -> Settings:
    """``settings`` on a fresh read-model schema holding the feed, with the beats map and the
    population table (written under ``directory``)."""
    schema = f"{settings.postgres.schema_}_areas"
    await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await seattle_feed(pool, schema)
    pop = directory / "population.csv"
    pop.write_text(POPULATION, encoding="utf-8")
    areas = AreaSettings(population=pop, maps=[AreaMapSettings(
        grain="beat", geojson=PROJECT_ROOT / "tests" / "data" / "areas" / "seattle_beats.geojson",
        id_property="beat")])
    return settings.model_copy(update={"postgres": settings.postgres.model_copy(update={"schema_": schema}),
                                       "areas": areas})


async def release_may(settings: Settings, pool: asyncpg.Pool) -> None:
    """Publish the closed month (the real publisher, on the session's Kafka)."""
    publisher = OutcomePublisher(settings, pool, settings.postgres.schema_, KafkaClients(settings.kafka),
                                 clock=lambda: datetime(2019, 7, 1, tzinfo=UTC))
    await publisher.start()
    try:
        await publisher.publish()
    finally:
        await publisher.stop()
