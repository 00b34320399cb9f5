"""The projector on the real broker and database: live read models equal a batch replay
(table by table), an as-of replay equals the live state as it stood then, bad records are
dead-lettered, and the outcome topic never shows a small cell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hub.kernel.kafka_io import scan_records
from hub.kernel.runtime import Runtime
from projections import tables as T
from projections.projector import project
from projections.queries import ReadModelReader
from projections.replay import ReplayError, replay_into
from projections.store import snapshot
from schemas.case import ServiceEnrolled
from schemas.dispatch import CallReceived
from schemas.encounter import PersonIdentified
from schemas.envelope import new_event
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


async def index_definitions(rt: Runtime, schema: str) -> list[str]:
    """The schema's indexes (primary keys included), with the schema name taken out."""
    rows = await rt.pool.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema)
    return sorted(r["indexdef"].replace(f"{schema}.", "") for r in rows)


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
    # a few facts per bucket (many buckets of whole components), derived by two worker
    # processes: the same read models
    bucketed = await replay_into(
        rt.settings, rt.pool, rt.kafka, f"{prefix}_bucketed", bucket_facts=3, workers=2
    )
    assert (bucketed.facts, bucketed.unreadable, bucketed.rows) == (replayed.facts, 1, replayed.rows)
    assert await snapshot(rt.pool, f"{prefix}_bucketed", TABLES) == now_live
    assert await index_definitions(rt, f"{prefix}_bucketed") == await index_definitions(rt, live)
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
    received = [e for e in first + second if e.type.startswith("cad.call.received")]
    assert head["calls"]["value"] == len([e for e in received if e.data["call_type_final"] == "CRISIS"])
    assert {"no_enforcement", "voluntary_transport", "enforcement", "repeat_three_plus_enrolled"} <= set(head)
    cells = [head[k] for k in head] + [c for r in doc["outcomes"]["rows"] for c in r["metrics"].values()]
    assert all(c["value"] is None or c["value"] == 0 or c["value"] > 10 for c in cells)
    published = await outcome_records(rt)
    assert published, "the outcome topic is empty"

    values = [json.loads(v) for v in published.values() if v is not None]
    assert all(v["value"] is None or v["value"] == 0 or v["value"] > 10 for v in values)
    assert all(v["release"] for v in values)  # every record names the release that published it
    # the first releases showed the months' calls; the second batch changed them by a few calls,
    # so their next releases withhold those cells rather than tell the difference
    first_releases = [await reader.release(r["release_id"]) for r in await reader.releases() if r["seq"] == 1]
    shown = [rec for found in first_releases if found for rec in found[1]
             if rec["metric"] == "calls" and rec["area_kind"] == "all" and not rec["suppressed"]]
    assert shown, "no release showed a month's calls"

    # timelines: every fact of an incident, in time order, CAD lines visible to dispatchers
    inc = next(e for e in first if e.type.startswith("cad.call.received")).subject
    entries = await reader.incident_timeline(inc)
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert {e["event_id"] for e in entries} >= {e.id for e in first if e.subject == inc}
    dispatcher = await reader.incident_timeline(inc, role="dispatcher")
    assert dispatcher and all(e["system"] == "cad" for e in dispatcher)


async def test_an_incident_patched_by_a_later_service_keeps_its_county_fields(proj_rt: Runtime) -> None:
    """A service enrolment in a later batch patches ``connected_to_services`` on the stored
    rows of its person's incidents (the live fold's patch path): the row written back keeps
    its county-defined fields as they were — equal to a replay, not re-encoded."""
    rt = proj_rt
    prefix = rt.settings.kafka.topic_prefix
    live, full = f"{prefix}_patched", f"{prefix}_patched_replay"
    t0 = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    who = "psn_" + "0d" * 16
    call = CallReceived(incident_id="sea:p0001", agency="sea", cad_number="p1", at=t0, source_timezone="UTC",
                        call_type_final="CRISIS", custom={"crisis_line": "yes", "units_sent": 2})
    seen = PersonIdentified(incident_id="sea:p0001", at=t0 + timedelta(minutes=5), person=who)
    await rt.log.append([new_event(call, source="test/p", record_id="p/rx"),
                         new_event(seen, source="test/p", record_id="p/id")])
    await project(rt, schema=live, until_caught_up=True)
    enrolled = ServiceEnrolled(case_id="case-p", person=who, at=t0 + timedelta(days=3), service_type="bh",
                               provider="clinic")
    await rt.log.append([new_event(enrolled, source="test/p", record_id="p/en")])
    stats = await project(rt, schema=live, until_caught_up=True)
    assert stats.new_facts == 1

    row = await ReadModelReader.from_settings(rt.pool, rt.settings, schema=live).incident_summary("sea:p0001")
    assert row is not None and row["connected_to_services"] is True
    assert row["custom"] == {"crisis_line": "yes", "units_sent": 2}
    await replay_into(rt.settings, rt.pool, rt.kafka, full)
    assert await snapshot(rt.pool, live, TABLES) == await snapshot(rt.pool, full, TABLES)
