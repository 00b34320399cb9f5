"""The outcome report of a read-model schema given by name counts calendar days and months
in the agency's time zone — the same as the API and ``hub report`` — never in UTC by
default (regression: a schema name used to mean UTC bounds, settings the agency's)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import asyncpg
import pytest

from hub.kernel.db import apply_sets
from hub.kernel.settings import Settings
from projections.queries import ReadModelReader
from projections.store import READ_MODEL_MIGRATIONS

pytestmark = pytest.mark.integration

CALLS = 11  # more than the small-cell maximum: the counts are published, not suppressed
RECEIVED = datetime(2024, 2, 1, 3, 0, tzinfo=UTC)  # 2024-01-31 19:00 in Los Angeles


async def _schema_with_calls(pool: asyncpg.Pool, schema: str) -> None:
    await apply_sets(pool, [READ_MODEL_MIGRATIONS], "read_models", schema)
    await pool.executemany(
        f'INSERT INTO "{schema}".incident_summary (incident_id, received_at, call_category,'
        " behavioral_health, referral_made, connected_to_services, co_responder, persons, fact_count)"
        " VALUES ($1, $2, 'welfare_check', true, false, false, false, '{}', 1)",
        [(f"tz:{i}", RECEIVED) for i in range(CALLS)],
    )


def _months(doc: dict) -> dict[str, int | None]:
    return {r["group"]: r["metrics"]["calls"]["value"] for r in doc["outcomes"]["rows"]}


async def test_report_of_a_named_schema_uses_the_agency_time_zone(
    settings: Settings, pg_pool: asyncpg.Pool
) -> None:
    schema = f"{settings.postgres.schema_}_tz"
    await _schema_with_calls(pg_pool, schema)
    agency = settings.model_copy(update={"agency_timezone": "America/Los_Angeles"})
    reader = ReadModelReader.from_settings(pg_pool, agency, schema=schema)
    assert (reader.schema, reader.tz) == (schema, "America/Los_Angeles")

    assert _months(await reader.report(by="month")) == {"2024-01": CALLS}
    jan_31 = await reader.report(date_from=date(2024, 1, 31), date_to=date(2024, 1, 31))
    assert jan_31["headline"]["calls"]["value"] == CALLS
    feb_1 = await reader.report(date_from=date(2024, 2, 1), date_to=date(2024, 2, 1))
    assert feb_1["headline"]["calls"]["value"] == 0

    # the same rows read in UTC fall in February: the zone is what decides, and it is explicit
    utc = dataclasses.replace(reader, tz="UTC")
    assert _months(await utc.report(by="month")) == {"2024-02": CALLS}

