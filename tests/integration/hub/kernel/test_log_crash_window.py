"""The crash window of :meth:`EventLog.append` on the real broker and PostgreSQL.

- A crash after Kafka acknowledged and before the index commit is simulated the way it
  happens: the crashed attempt's envelopes are produced straight to the fact topic exactly
  as the log produces them (no index rows), then the retry appends the same events (with a
  new ``recordedat``) through the log. ``hub verify`` exits 0 and names the orphan copies;
  a fresh unindexed id or an indexed id with altered data still fails it.
- A batch whose producing fails in part commits the acknowledged part and releases only the
  failed ids; a cancelled append finishes its index statement. Neither leaves orphan copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from hub.kernel import metrics
from hub.kernel.log import AppendError
from hub.kernel.runtime import Runtime
from hub.kernel.seal import Sealer
from hub.kernel.verify import run_verify
from schemas.dispatch import UnitDispatched
from schemas.envelope import Envelope, new_event
from tests.integration.hub.kernel.crash import produce_as_crashed_appender
from tests.integration.hubcli import run_hub
from tests.integration.waiting import wait_for

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def dispatched(tag: str, n: int, *, recorded: datetime = T0) -> Envelope:
    return new_event(
        UnitDispatched(incident_id=f"sea:{tag}{n % 3}", unit_id=f"u{n}", at=T0 + timedelta(seconds=n)),
        source="cad/test", record_id=f"{tag}-{n}", recorded_at=recorded,
    )


async def copies_in_log(rt: Runtime, ids: set[str]) -> dict[str, int]:
    counts = dict.fromkeys(ids, 0)
    async for e in rt.log.read():
        if e.envelope.id in counts:
            counts[e.envelope.id] += 1
    return counts


async def test_a_crash_before_the_index_commit_leaves_orphan_copies_not_breaks(fresh_runtime) -> None:
    async with fresh_runtime() as rt:
        before = [dispatched("a", n) for n in range(8)]
        assert len((await rt.log.append(before)).appended) == 8

        # the crashed attempt: a batch of 3, the broker acknowledged 2 of them, then the process died
        batch = [dispatched("c", n, recorded=T0 + timedelta(hours=1)) for n in range(3)]
        crashed = await produce_as_crashed_appender(rt.settings, batch[:2])
        assert await rt.pool.fetchval(
            f"SELECT count(*) FROM {rt.settings.core_schema}.indexed_events WHERE event_id = any($1::text[])",
            [e.id for e in batch],
        ) == 0
        await Sealer(rt.settings, rt.pool, rt.kafka).run_once()  # the orphans may be sealed before the retry

        # the retry re-pulls the source and maps it again: same ids, a later recordedat
        retry = [e.model_copy(update={"recordedat": T0 + timedelta(hours=2)}) for e in batch]
        result = await rt.log.append(retry)
        assert [a.envelope.id for a in result.appended] == [e.id for e in batch] and result.duplicates == []
        home = {a.envelope.id: (a.topic, a.partition, a.offset) for a in result.appended}
        counts = await copies_in_log(rt, {e.id for e in batch})
        assert counts == {batch[0].id: 2, batch[1].id: 2, batch[2].id: 1}

        expected = sorted(
            (m.topic, m.partition, m.offset, env.id, *home[env.id])
            for env, m in zip(batch[:2], crashed, strict=True)
        )
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert report.ok, [b.describe() for b in report.breaks]
        assert sorted(tuple(asdict(o).values()) for o in report.orphan_copies) == expected
        assert metrics.VERIFY_OK._value.get() == 1 and metrics.VERIFY_ORPHAN_COPIES._value.get() == 2

        cli = await asyncio.to_thread(run_hub, rt.settings, "verify", "--json")
        assert cli.returncode == 0, cli.stderr
        out = json.loads(cli.stdout)
        assert out["ok"] is True and out["breaks"] == []
        assert sorted(tuple(o.values()) for o in out["orphan_copies"]) == expected
        text = await asyncio.to_thread(run_hub, rt.settings, "verify")
        assert text.returncode == 0, text.stderr
        first = crashed[0]
        assert f"orphan_copy   {first.topic}[{first.partition}]@{first.offset}" in text.stdout
        assert "2 orphan copies (not breaks)" in text.stdout

        # still forged: a fresh id nobody appended, and an indexed id with altered data
        fresh = dispatched("evil", 1)
        altered = before[3].model_copy(update={"data": before[3].data | {"unit_id": "u-evil"}})
        forged = await produce_as_crashed_appender(rt.settings, [fresh, altered])
        report = await run_verify(rt.settings, rt.pool, rt.kafka)
        assert sorted((b.kind, b.partition, b.offset) for b in report.breaks) == sorted(
            ("forged", m.partition, m.offset) for m in forged
        )
        assert len(report.orphan_copies) == 2 and metrics.VERIFY_OK._value.get() == 0
        cli = await asyncio.to_thread(run_hub, rt.settings, "verify", "--json")
        assert cli.returncode == 2
        out = json.loads(cli.stdout)
        details = {b["offset"]: b["detail"] for b in out["breaks"]}
        assert "no index entry" in details[forged[0].offset]
        assert "different content" in details[forged[1].offset]
        assert len(out["orphan_copies"]) == 2


async def test_a_partly_failed_batch_commits_what_the_broker_acknowledged(log_rt: Runtime) -> None:
    tag = uuid.uuid4().hex[:6]
    small = [dispatched(tag, n) for n in range(4)]
    huge = dispatched(tag, 99).model_copy(update={"data": small[0].data | {"unit_id": "x" * 1_200_000}})
    batch = [small[0], small[1], huge, small[2], small[3]]
    with pytest.raises(AppendError) as caught:
        await log_rt.log.append(batch)
    err = caught.value
    assert [a.envelope.id for a in err.result.appended] == [e.id for e in small]
    assert [env.id for env, _ in err.failed] == [huge.id]
    rows = await log_rt.pool.fetch(
        f'SELECT event_id, "partition", "offset" FROM {log_rt.settings.core_schema}.indexed_events'
        " WHERE event_id = any($1::text[])", [e.id for e in batch],
    )
    assert {(r["event_id"], r["partition"], r["offset"]) for r in rows} == {
        (a.envelope.id, a.partition, a.offset) for a in err.result.appended
    }
    # the retry of the whole batch: the acknowledged part is refused, the failed one fails again
    with pytest.raises(AppendError) as again:
        await log_rt.log.append(batch)
    assert again.value.result.appended == [] and [d.id for d in again.value.result.duplicates] == [
        e.id for e in small
    ]
    assert await copies_in_log(log_rt, {e.id for e in batch}) == {e.id: 1 for e in small} | {huge.id: 0}


async def test_a_cancelled_append_finishes_its_index_statement(log_rt: Runtime) -> None:
    rt, schema = log_rt, log_rt.settings.core_schema
    tag = uuid.uuid4().hex[:6]
    batch = [dispatched(tag, n) for n in range(6)]
    held = batch[2]
    # hold the index row of one id in another transaction: the append's index statement
    # (after the acknowledgements) blocks on it
    async with rt.pool.acquire() as blocker:
        txn = blocker.transaction()
        await txn.start()
        await blocker.execute(
            f'INSERT INTO {schema}.event_index (event_id, topic, event_type, "partition", "offset")'
            " VALUES ($1::uuid, 0, 0, 0, 0)",
            held.id,
        )
        task = asyncio.create_task(rt.log.append(batch))

        async def blocked() -> bool:
            return bool(await rt.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                f'%"{schema}"."event_index"%',
            ))

        await wait_for(blocked, what="the append waiting on the held index row")
        task.cancel()
        await txn.rollback()  # the held id is free again
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cancelled append still produced and indexed the whole batch
    rows = await rt.pool.fetch(
        f'SELECT event_id, "offset" FROM {schema}.indexed_events WHERE event_id = any($1::text[])',
        [e.id for e in batch],
    )
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in batch)
    assert all(r["offset"] is not None for r in rows)
    retry = await rt.log.append(batch)
    assert retry.appended == [] and len(retry.duplicates) == len(batch)
    assert await copies_in_log(rt, {e.id for e in batch}) == {e.id: 1 for e in batch}


async def test_cancelling_at_any_moment_never_leaves_a_second_copy(log_rt: Runtime) -> None:
    """Cancel appends after various delays, retry each: one copy of every event, and the
    log of this module verifies without a break or an orphan copy."""
    ids: set[str] = set()
    for i, delay in enumerate((0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03)):
        batch = [dispatched(f"k{i}{uuid.uuid4().hex[:4]}", n) for n in range(20)]
        ids |= {e.id for e in batch}
        task = asyncio.create_task(log_rt.log.append(batch))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        retry = await log_rt.log.append(batch)
        assert len(retry.appended) + len(retry.duplicates) == len(batch)
    assert set((await copies_in_log(log_rt, ids)).values()) == {1}
    report = await run_verify(log_rt.settings, log_rt.pool, log_rt.kafka, store=False)
    assert report.ok and report.orphan_copies == [], [b.describe() for b in report.breaks]
