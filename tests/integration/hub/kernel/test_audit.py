"""The audit tables are append-only against the application itself, in PostgreSQL.

Connected AS THE RUNTIME ROLE (what every hub process serves with), nothing can rewrite the
access log or the reveal audit: no UPDATE, DELETE, TRUNCATE, no disabling the trigger, no
DROP, no ALTER/DROP of the schema, no new table; INSERT and SELECT work. The owner role's
own UPDATE/DELETE/TRUNCATE are refused by the triggers too."""

from __future__ import annotations

import asyncpg
import pytest

from hub.bootstrap import migrate_all
from hub.entry.api.roles import Principal, Role
from hub.kernel.audit import AccessLog, AccessRecord, AuditTopic, append_audit_row
from hub.kernel.settings import Settings

pytestmark = pytest.mark.integration

AUDIT_TABLES = ("access_log", "deadletter_access")


@pytest.fixture
async def access_log(
    settings: Settings, pg_pool: asyncpg.Pool, runtime_pool: asyncpg.Pool, audit_topic: AuditTopic
) -> AccessLog:
    await migrate_all(pg_pool, settings)
    await migrate_all(pg_pool, settings)  # idempotent
    return AccessLog(runtime_pool, settings.core_schema, audit_topic)


async def test_the_runtime_pool_is_not_the_owner(runtime_pool: asyncpg.Pool, settings: Settings) -> None:
    who = await runtime_pool.fetchrow(
        "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert who["name"] == settings.postgres.runtime_user != settings.postgres.user
    assert not (who["rolsuper"] or who["rolcreaterole"] or who["rolcreatedb"])


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


@pytest.mark.parametrize("table", AUDIT_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET action = 'x'",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
        "ALTER TABLE {t} DISABLE TRIGGER ALL",
        "ALTER TABLE {t} DISABLE TRIGGER USER",
        "ALTER TABLE {t} ADD COLUMN sneaky text",
        "ALTER TABLE {t} OWNER TO CURRENT_USER",
        "DROP TABLE {t}",
        "CREATE TRIGGER t BEFORE INSERT ON {t} FOR EACH ROW"
        " EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
    ],
)
async def test_the_runtime_role_cannot_rewrite_the_audit_tables(
    access_log: AccessLog, runtime_pool: asyncpg.Pool, table: str, statement: str
) -> None:
    who = Principal("bob", Role.ADMIN)
    await access_log.append(AccessRecord(who, "incident_timeline", "sea:1", "audit", "denied"))
    t = f'"{access_log.schema}".{table}'
    count = await runtime_pool.fetchval(f"SELECT count(*) FROM {t}")
    async with runtime_pool.acquire() as conn, conn.transaction():  # LOCK needs a transaction
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement.format(t=t))
    assert await runtime_pool.fetchval(f"SELECT count(*) FROM {t}") == count


@pytest.mark.parametrize(
    "statement",
    [
        "DROP SCHEMA {s} CASCADE",
        "ALTER SCHEMA {s} RENAME TO elsewhere",
        "ALTER SCHEMA {s} OWNER TO CURRENT_USER",
        "CREATE TABLE {s}.mine (x int)",
        "CREATE FUNCTION {s}.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE public.mine (x int)",
        "CREATE SCHEMA mine",
    ],
)
async def test_the_runtime_role_has_no_ddl(
    access_log: AccessLog, runtime_pool: asyncpg.Pool, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await runtime_pool.execute(statement.format(s=f'"{access_log.schema}"'))


async def test_the_runtime_role_inserts_and_selects_the_reveal_audit(
    access_log: AccessLog, runtime_pool: asyncpg.Pool, audit_topic: AuditTopic
) -> None:
    values = {"deadletter_id": "dl-1", "actor": "op", "action": "show-masked", "reason": None}
    row = await append_audit_row(runtime_pool, audit_topic, access_log.schema, "deadletter_access", values)
    t = f'"{access_log.schema}".deadletter_access'
    assert await runtime_pool.fetchval(f"SELECT actor FROM {t} WHERE id = $1", row["id"]) == "op"


async def test_ordinary_tables_stay_writable_for_the_runtime_role(
    access_log: AccessLog, runtime_pool: asyncpg.Pool
) -> None:
    t = f'"{access_log.schema}".deadletters'
    assert await runtime_pool.fetchval(f"SELECT count(*) FROM {t}") >= 0
    await runtime_pool.execute(f"DELETE FROM {t} WHERE id = 'no-such-letter'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # migration history is read-only
        await runtime_pool.execute(f'DELETE FROM "{access_log.schema}".schema_migrations WHERE false')


@pytest.mark.parametrize("statement", ["UPDATE {t} SET purpose = 'x'", "DELETE FROM {t}", "TRUNCATE {t}"])
async def test_even_the_owner_is_refused_by_the_triggers(
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
