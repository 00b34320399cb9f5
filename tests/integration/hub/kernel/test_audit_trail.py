"""The audit trail cannot be rewritten unnoticed, on the real broker and PostgreSQL: every
access-log and reveal-audit row is also on the sealed audit topic, and ``hub verify``
(library and command) fails, naming the row, when the OWNER role — the only one that can,
after disabling the append-only trigger — deletes, alters or slips in an audit row."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from hub.entry.api.roles import Principal, Role
from hub.kernel.audit import AccessLog, AccessRecord, Operator
from hub.kernel.db import open_pool
from hub.kernel.deadletters import DeadLetterStore
from hub.kernel.runtime import Runtime
from hub.kernel.seal import Sealer
from hub.kernel.verify import run_verify
from schemas.topics import audit_topic
from tests.integration.hubcli import run_hub


async def fill_audit(rt: Runtime) -> list[int]:
    log = AccessLog(rt.pool, rt.settings.core_schema, rt.audit)
    ids = [
        await log.append(AccessRecord(Principal(f"u{i}", Role.CLINICIAN, "p1"), "person_timeline",
                                      "psn_" + f"{i:032x}", "treatment", "allowed", i))
        for i in range(3)
    ]  # fmt: skip
    ids.append(await log.append(AccessRecord(Operator("ops"), "incident_timeline", "sea:1", "<none>",
                                             "refused", reason="no purpose")))  # fmt: skip
    store = DeadLetterStore(rt.pool, rt.settings.core_schema)
    await store.record_access(rt.audit, "dl-x", "ops", "reveal", "ticket 7")
    return ids


async def as_owner(rt: Runtime, *statements: str) -> None:
    """What an insider with the owner role's password could do: switch the trigger off."""
    async with (
        open_pool(rt.settings, role="owner", max_size=1) as pool,
        pool.acquire() as conn,
        conn.transaction(),
    ):
        for stmt in statements:
            await conn.execute(stmt.format(s=rt.settings.core_schema))


async def test_the_audit_topic_is_sealed_and_verified_with_the_tables(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        await fill_audit(rt)
        sealed = await Sealer(rt.settings, rt.pool, rt.kafka).run_once()
        topic = audit_topic(rt.settings.kafka.topic_prefix)
        assert [(s.topic, s.record_count) for s in sealed.seals if s.topic == topic] == [(topic, 5)]
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert report.ok, [b.describe() for b in report.breaks]
        (audit_part,) = [p for p in report.partitions if p.topic == topic]
        assert (audit_part.records, audit_part.sealed_through, audit_part.unsealed) == (5, 4, 0)


async def test_deleting_an_audit_row_as_the_owner_fails_verify(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        ids = await fill_audit(rt)
        await Sealer(rt.settings, rt.pool, rt.kafka).run_once()
        assert (await run_verify(rt.settings, rt.pool, rt.kafka)).ok
        await as_owner(
            rt,
            "ALTER TABLE {s}.access_log DISABLE TRIGGER access_log_append_only",
            f"DELETE FROM {{s}}.access_log WHERE id = {ids[1]}",
            "ALTER TABLE {s}.access_log ENABLE TRIGGER access_log_append_only",
        )
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        topic = audit_topic(rt.settings.kafka.topic_prefix)
        assert [(b.kind, b.topic, b.offset) for b in report.breaks] == [("missing", topic, 1)]
        assert f"access_log:{ids[1]}" in report.breaks[0].detail

        cli = await asyncio.to_thread(run_hub, rt.settings, "verify", "--json")
        assert cli.returncode != 0, cli.stderr
        out = json.loads(cli.stdout)
        assert out["ok"] is False and [(b["kind"], b["topic"]) for b in out["breaks"]] == [("missing", topic)]


async def test_altering_or_inserting_audit_rows_as_the_owner_fails_verify(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        ids = await fill_audit(rt)
        await as_owner(
            rt,
            "ALTER TABLE {s}.access_log DISABLE TRIGGER access_log_append_only",
            f"UPDATE {{s}}.access_log SET purpose = 'audit' WHERE id = {ids[0]}",
            "ALTER TABLE {s}.access_log ENABLE TRIGGER access_log_append_only",
            "ALTER TABLE {s}.deadletter_access DISABLE TRIGGER deadletter_access_append_only",
            "UPDATE {s}.deadletter_access SET reason = 'routine'",
            "ALTER TABLE {s}.deadletter_access ENABLE TRIGGER deadletter_access_append_only",
            "INSERT INTO {s}.access_log (sub, role, action, subject, purpose, outcome)"
            " VALUES ('x', 'admin', 'person_timeline', 'psn_0', 'audit', 'allowed')",
        )
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        kinds = sorted((b.kind, b.detail.split()[2]) for b in report.breaks)
        described = [b.describe() for b in report.breaks]
        assert [k for k, _ in kinds] == ["altered", "altered", "forged"], described
        assert {row for _, row in kinds} >= {f"access_log:{ids[0]}"}


async def test_the_runtime_role_cannot_take_the_owners_route(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        await fill_audit(rt)
        for stmt in (
            "ALTER TABLE {s}.access_log DISABLE TRIGGER access_log_append_only",
            "ALTER TABLE {s}.deadletter_access DISABLE TRIGGER ALL",
            "DELETE FROM {s}.deadletter_access",
        ):
            try:
                await rt.pool.execute(stmt.format(s=rt.settings.core_schema))
            except asyncpg.InsufficientPrivilegeError:
                continue
            raise AssertionError(f"the runtime role could run: {stmt}")
        assert (await run_verify(rt.settings, rt.pool, rt.kafka)).ok
