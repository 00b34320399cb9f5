"""The projector on the real broker and database: live read models equal a batch replay
(table by table), an as-of replay equals the live state as it stood then, bad records are
dead-lettered, and the outcome topic never shows a small cell."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.kernel.kafka_io import scan_records
from hub.kernel.runtime import Runtime
from projections import tables as T
from projections.projector import project
from projections.queries import ReadModelReader
from projections.replay import ReplayError, replay_into
from projections.store import snapshot
from schemas.topics import fact_topic, outcome_topic
from tests.integration.projections.projection_scenario import scenario

pytestmark = pytest.mark.integration
TABLES = (*T.READ_MODELS, T.POSITIONS)


async def outcome_records(rt: Runtime) -> dict[str, bytes | None]:
    """The outcome topic as a compacted view: latest value per key."""
    latest: dict[str, bytes | None] = {}
    topic = outcome_topic(rt.settings.kafka.topic_prefix)
    async for r in scan_records(rt.kafka, [topic], role="test-outcomes"):
        latest[r.key.decode()] = r.value
    return latest


async def test_live_read_models_equal_replay_and_as_of(proj_rt: Runtime) -> None:
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    live, full, past = f"{prefix}_live", f"{prefix}_replay", f"{prefix}_asof"
    first = scenario(24, tag="a")
    assert len((await rt.log.append(first)).appended) == len(first)
    stats = await project(rt, schema=live, until_caught_up=True)
    assert stats.new_facts == len(first) and stats.dead_lettered == 0
    at_t = await snapshot(rt.pool, live, TABLES)
    t = datetime.now(UTC)
    second = scenario(12, tag="b")  # recorded after t

    # later facts, a re-appended duplicate (refused by the log) and a corrupt record that
    # carries the hub's record MAC (a record without one is quarantined instead: see
    # test_projection_forged_records.py)
    await rt.log.append(second + first[:3])
    topic = fact_topic(prefix, "dispatch")
    headers = rt.log.mac_keys.sign(topic, b"sea:x", b"{not json", [])
    meta = await (
        await rt.log.producer.send(topic, value=b"{not json", key=b"sea:x", headers=headers)
    )
    stats = await project(rt, schema=live, until_caught_up=True)
    assert stats.new_facts == len(second) and stats.dead_lettered == 1
    dl = await rt.pool.fetchval(
        f'SELECT count(*) FROM "{rt.settings.core_schema}".deadletters WHERE record_ref = $1 AND stage = $2',
        f"{meta.topic}[{meta.partition}]@{meta.offset}",
        "project",
    )
    assert dl == 1

    now_live = await snapshot(rt.pool, live, TABLES)
    replayed = await replay_into(rt.settings, rt.pool, rt.kafka, full)
    assert replayed.facts == len(first) + len(second) and replayed.unreadable == 1
    assert await snapshot(rt.pool, full, TABLES) == now_live
    await replay_into(rt.settings, rt.pool, rt.kafka, past, as_of=t)
    as_of = await snapshot(rt.pool, past, TABLES)
    for name in at_t:
        assert [r for r in as_of[name] if r not in at_t[name]][:3] == [
            r for r in at_t[name] if r not in as_of[name]
        ][:3], name
    assert as_of == at_t
    with pytest.raises(ReplayError):
        await replay_into(rt.settings, rt.pool, rt.kafka, full)

    # the report and the outcome topic: headline present, no published small cell
    reader = ReadModelReader.from_settings(rt.pool, rt.settings, schema=live)
    doc = await reader.report()
    head = doc["headline"]
    assert head["calls"]["value"] == len(
        [e for e in first + second if e.type.startswith("cad.call.received") and e.data["behavioral_health"]]
    )
    assert {"no_enforcement", "voluntary_transport", "enforcement", "repeat_three_plus_enrolled"} <= set(head)
    cells = [head[k] for k in head] + [c for r in doc["outcomes"]["rows"] for c in r["metrics"].values()]
    assert all(c["value"] is None or c["value"] == 0 or c["value"] > 10 for c in cells)
    published = await outcome_records(rt)
    assert published, "the outcome topic is empty"

    values = [json.loads(v) for v in published.values() if v is not None]
    assert any(v["metric"] == "calls" and v["area_kind"] == "all" and not v["suppressed"] for v in values)
    assert all(v["value"] is None or v["value"] == 0 or v["value"] > 10 for v in values)

    # timelines: every fact of an incident, in time order, CAD lines visible to dispatchers
    inc = next(e for e in first if e.type.startswith("cad.call.received")).subject
    entries = await reader.incident_timeline(inc)
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert {e["event_id"] for e in entries} >= {e.id for e in first if e.subject == inc}
    dispatcher = await reader.incident_timeline(inc, role="dispatcher")
    assert dispatcher and all(e["system"] == "cad" for e in dispatcher)
