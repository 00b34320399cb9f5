"""The access log is append-only in PostgreSQL itself: UPDATE, DELETE and TRUNCATE fail."""

from __future__ import annotations

import asyncpg
import pytest

from hub.bootstrap import migrate_all
from hub.entry.api.roles import Principal, Role
from hub.kernel.audit import AccessLog, AccessRecord
from hub.kernel.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def access_log(settings: Settings, pg_pool: asyncpg.Pool) -> AccessLog:
    log = AccessLog(pg_pool, settings.core_schema)
    await migrate_all(pg_pool, settings)
    await migrate_all(pg_pool, settings)  # idempotent
    return log


async def test_append_and_read_back(access_log: AccessLog) -> None:
    before = await access_log.count()
    who = Principal(sub="alice", role=Role.CLINICIAN, program="coresp-1")
    row_id = await access_log.append(
        AccessRecord(who, "person_timeline", "psn_" + "c" * 32, "treatment", "allowed", 3, "r1")
    )
    assert await access_log.count() == before + 1
    rows = await access_log.recent(subject="psn_" + "c" * 32)
    assert rows[0]["id"] == row_id
    assert (rows[0]["sub"], rows[0]["role"], rows[0]["purpose"], rows[0]["entries"]) == (
        "alice",
        "clinician",
        "treatment",
        3,
    )
    assert rows[0]["at"] is not None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET purpose = 'x'",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
    ],
)
async def test_changes_refused_by_the_database(
    access_log: AccessLog, pg_pool: asyncpg.Pool, statement: str
) -> None:
    who = Principal(sub="bob", role=Role.ADMIN)
    await access_log.append(AccessRecord(who, "incident_timeline", "sea:1", "operations", "denied"))
    count = await access_log.count()
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await pg_pool.execute(statement.format(t=f'"{access_log.schema}".access_log'))
    assert await access_log.count() == count


async def test_bad_outcome_rejected(access_log: AccessLog) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await access_log.append(AccessRecord(Principal("x", Role.ADMIN), "a", "s", "audit", "maybe"))
