"""The rebuild over worker processes equals the one-process rebuild (and the live read
models, see test_projector_live.py); a failed rebuild leaves its target as empty as it was
and no staging schema behind."""

from __future__ import annotations

import pytest

from hub.kernel.runtime import Runtime
from projections import replay as replay_module
from projections import tables as T
from projections.replay import ReplayError, replay_into
from projections.store import snapshot
from tests.integration.projections.projection_scenario import scenario

pytestmark = pytest.mark.integration


async def schemas_like(rt: Runtime, prefix: str) -> list[str]:
    rows = await rt.pool.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", prefix.replace("_", r"\_") + "%"
    )
    return [r["nspname"] for r in rows]


async def test_workers_rebuild_what_one_process_rebuilds(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    envs = scenario(30, tag="d")
    assert len((await rt.log.append(envs)).appended) == len(envs)
    one, two = f"{prefix}_one", f"{prefix}_two"
    stats = await replay_into(rt.settings, rt.pool, rt.kafka, one, bucket_facts=7)
    assert stats.records == stats.facts >= len(envs) and stats.unreadable == stats.quarantined == 0
    parallel = await replay_into(rt.settings, rt.pool, rt.kafka, two, bucket_facts=7, workers=2)
    assert parallel == stats
    assert await snapshot(rt.pool, two) == await snapshot(rt.pool, one)
    # the keys and indexes are back, and the staging schemas are gone
    for schema in (one, two):
        assert await rt.pool.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'facts_pkey'", schema
        ) == 1
        assert await schemas_like(rt, f"{schema}_rb") == []
    with pytest.raises(ReplayError):  # a schema holding read models is not rebuilt into
        await replay_into(rt.settings, rt.pool, rt.kafka, one)
    # the rows arrive vacuumed: every page all-visible (no autovacuum pass over the fresh
    # rows once they are live; index-only scans from the first query) and analyzed
    for schema in (one, two):
        tables = await rt.pool.fetch(
            """SELECT c.relname, c.relpages, c.relallvisible, s.last_vacuum, s.last_analyze
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_stat_user_tables s ON s.relid = c.oid
                WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'schema_migrations'""",
            schema,  # (the target's own record of its migrations is not rebuilt)
        )
        facts = next(t for t in tables if t["relname"] == "facts")
        assert facts["relpages"] > 0
        for t in tables:
            assert t["relallvisible"] == t["relpages"], dict(t)
            assert t["last_vacuum"] is not None and t["last_analyze"] is not None, dict(t)


async def test_a_failed_rebuild_leaves_the_target_empty_and_no_staging_schema(
    proj_rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    assert len((await rt.log.append(scenario(6, tag="f"))).appended) > 0
    target = f"{prefix}_failed"

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("derive failed")

    monkeypatch.setattr(replay_module, "derive_bucket", broken)
    with pytest.raises(RuntimeError, match="derive failed"):
        await replay_into(rt.settings, rt.pool, rt.kafka, target, bucket_facts=5)
    assert await schemas_like(rt, f"{target}_rb") == []
    assert all(rows == [] for rows in (await snapshot(rt.pool, target, T.READ_MODELS)).values())
    monkeypatch.undo()
    stats = await replay_into(rt.settings, rt.pool, rt.kafka, target)  # and it can be rebuilt into
    assert stats.facts > 0
