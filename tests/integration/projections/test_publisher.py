"""The outcome publisher's audit rows survive a crash, on the real broker and PostgreSQL: a
``release_log`` row inserted but never acknowledged on the audit topic (the projector
SIGKILLed while the broker had no leader — what the seed-13 long fault run hit: ``hub verify``
``forged``, "audit row release_log:37 is not in the audit topic") is appended by the next
start, once, and the audit trail verifies again."""

from __future__ import annotations

import pytest

from hub.kernel.audit import audit_key, audit_table_values, compare_audit
from hub.kernel.kafka_io import scan_records
from hub.kernel.runtime import Runtime
from projections.publisher import OutcomePublisher
from schemas.topics import audit_topic

pytestmark = pytest.mark.integration


async def audit_records(rt: Runtime) -> list[tuple[int, bytes | None, bytes | None]]:
    topic = audit_topic(rt.settings.kafka.topic_prefix)
    return [(r.offset, r.key, r.value) async for r in scan_records(rt.kafka, [topic], role="test-audit")]


async def test_a_release_row_a_crash_left_off_the_audit_topic_is_appended_on_the_next_start(
    fresh_runtime,
) -> None:
    async with fresh_runtime() as rt:
        schema = f"{rt.settings.kafka.topic_prefix}_pub"
        await rt.migrate_schema("read_models", schema)
        core = rt.settings.core_schema
        row_id = await rt.pool.fetchval(  # the insert of append_audit_row, then the crash
            f"""INSERT INTO "{core}".release_log (release_id, read_model_schema, channel, vocabulary,
                    code_version, records, records_sha256)
                VALUES ('2024-03.r1', $1, 'topic', NULL, 'test', 0, $2) RETURNING id""",
            schema, "0" * 64,
        )
        other = await rt.pool.fetchval(  # another schema's row: not this publisher's to repair
            f"""INSERT INTO "{core}".release_log (release_id, read_model_schema, channel, vocabulary,
                    code_version, records, records_sha256)
                VALUES ('2024-03.r1', 'elsewhere', 'topic', NULL, 'test', 0, $1) RETURNING id""",
            "0" * 64,
        )
        table = await audit_table_values(rt.pool, core)
        gaps = compare_audit(table, await audit_records(rt))
        assert sorted(g.kind for g in gaps) == ["forged", "forged"]  # hub verify's view before

        for _ in range(2):  # the next start repairs; a later one finds nothing to do
            publisher = OutcomePublisher(rt.settings, rt.pool, schema, rt.kafka)
            await publisher.start()
            await publisher.stop()

        records = await audit_records(rt)
        keys = [k for _, k, _ in records]
        assert keys.count(audit_key("release_log", row_id)) == 1
        assert audit_key("release_log", other) not in keys
        (gap,) = compare_audit(table, records)
        assert gap.key == f"release_log:{other}" and gap.kind == "forged"
