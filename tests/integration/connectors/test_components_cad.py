"""Connectors against the real Kafka broker and PostgreSQL (session-unique prefix/schema)."""

from __future__ import annotations

import collections
import signal
import subprocess

from connectors.cad.ingest import ingest_files
from connectors.cad.profile import load_profile
from connectors.components import CadSoqlPollerConfig, cad_soql_poller
from connectors.core.state import PostgresCursorStore
from hub.devtools.simulate.feeds import soql_row
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.servers import FeedState, cad_feed_app, serve
from hub.kernel import metrics
from hub.kernel.settings import PROJECT_ROOT
from tests.integration.hubcli import start_hub
from tests.integration.waiting import wait_for

SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"


async def dispatch_events(rt, agency: str) -> list:  # type: ignore[no-untyped-def]
    from schemas.topics import fact_topic

    out = []
    async for ev in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, "dispatch")]):
        if ev.envelope.subject.startswith(agency + ":"):
            out.append(ev.envelope)
    return out


async def test_seattle_sample_imports_once_with_zero_dead_letters(rt) -> None:  # type: ignore[no-untyped-def]
    p = load_profile("seattle")
    first = await ingest_files([SEATTLE], p, rt.log, rt.deadletter_sealer)
    again = await ingest_files([SEATTLE], p, rt.log, rt.deadletter_sealer)
    assert (first.read, first.appended, first.dead_lettered) == (222, 222, 0) and first.balanced()
    assert (again.appended, again.events_appended, again.duplicates) == (0, 0, 222) and again.balanced()
    events = await dispatch_events(rt, "SPD")
    assert collections.Counter(e.type for e in events)["cad.call.received.v4"] == 222


async def test_bad_rows_are_dead_lettered_in_postgres(rt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = load_profile("seattle")
    header = SEATTLE.read_text().splitlines()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n9,ASSISTANCE RENDERED,911,2,X,Y,not a time,,E,C,C3,-1,1\n9,short\n")
    counts = await ingest_files([bad], p, rt.log, rt.deadletter_sealer)
    assert (counts.read, counts.dead_lettered, counts.dead_letters_new) == (2, 2, 2)
    rows = await rt.pool.fetch(
        f"SELECT reason, record_ref FROM {rt.settings.core_schema}.deadletters WHERE source = 'cad/seattle'"
    )
    assert {r["record_ref"] for r in rows} >= {"bad.csv:2", "bad.csv:3"}


async def test_soql_poller_outage_backoff_metrics_and_revisions(rt) -> None:  # type: ignore[no-untyped-def]
    county = CountyModel(seed=11, days=1, calls_per_day=60, malformed_share=0).generate()
    state = FeedState(outage=True)
    for call in county.calls:
        state.publish(call.cad_number, soql_row(call))
    runner, port = await serve(cad_feed_app(state))
    name = "it-soql-outage"
    comp = cad_soql_poller(
        rt,
        CadSoqlPollerConfig(
            name=name,
            url=f"http://127.0.0.1:{port}/resource/calls.json",
            profile="san_francisco",
            overrides={"agency": "SIMA"},
            page_size=25,
            interval=0.2,
        ),
    )
    comp.runner.backoff = type(comp.runner.backoff)(base=0.05, cap=0.2)
    errors_before = metrics.SOURCE_ERRORS.labels(name)._value.get()
    await comp.start()
    try:
        await wait_for(lambda: _ready(comp.runner.failures >= 2), what="failures")
        assert metrics.SOURCE_ERRORS.labels(name)._value.get() >= errors_before + 2
        assert metrics.SOURCE_UP.labels(name)._value.get() == 0
        state.outage = False
        cursors = PostgresCursorStore(rt.pool, rt.settings.core_schema)
        await wait_for(lambda: _caught_up(cursors, name, state), what="catch-up")
        assert metrics.SOURCE_UP.labels(name)._value.get() == 1
        revised = county.calls[:5]
        for call in revised:  # republish with a newer updated-at
            call.revisions.append((call.updated_at.replace(year=2030), {"outcome": "arrest"}))  # type: ignore[union-attr]
            state.publish(call.cad_number, soql_row(call.latest()))
        await wait_for(lambda: _caught_up(cursors, name, state), what="revisions")
    finally:
        await comp.stop()
        await runner.cleanup()
    events = await dispatch_events(rt, "SIMA")
    kinds = collections.Counter(e.type for e in events)
    assert kinds["cad.call.received.v4"] == len(county.calls)
    revs = [e for e in events if e.type == "cad.call.revised.v3"]
    assert sorted(e.data.get("cad_number", e.subject) for e in revs) == sorted(
        f"SIMA:{c.cad_number}" for c in revised
    )


async def _ready(value: bool) -> bool:
    return value


async def _caught_up(cursors: PostgresCursorStore, name: str, state: FeedState) -> bool:
    cur = await cursors.load(name)
    if not cur:
        return False
    newest = max(r["data_updated_at"] for r in state.rows.values())
    same = sum(1 for r in state.rows.values() if r["data_updated_at"] == newest)
    return bool(cur["t"] == newest and cur["skip"] >= same)


async def test_poller_killed_mid_page_ends_with_one_fact_per_revision(rt, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    county = CountyModel(seed=12, days=1, calls_per_day=150, malformed_share=0).generate()
    state = FeedState(delay=0.15)
    for call in county.calls:
        state.publish(call.cad_number, soql_row(call))
    runner, port = await serve(cad_feed_app(state))
    name = "it-soql-kill"
    config = tmp_path / "connectors.yaml"
    config.write_text(
        "components:\n"
        f"  - kind: cad-soql-poller\n    name: {name}\n    url: http://127.0.0.1:{port}/resource/calls.json\n"
        "    profile: san_francisco\n    overrides: {agency: SIMK}\n    page_size: 10\n    interval: 0.2\n"
    )
    def start() -> subprocess.Popen[bytes]:
        return start_hub(settings, "connectors", "run", "--config", str(config), stderr=subprocess.DEVNULL)

    cursors = PostgresCursorStore(rt.pool, rt.settings.core_schema)
    proc = start()
    try:
        await wait_for(lambda: _ready(len(state.requests) >= 4), what="some pages served")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = await cursors.load(name)
        state.delay = 0.0
        proc = start()
        await wait_for(lambda: _caught_up(cursors, name, state), timeout=60, what="catch-up after restart")
        revised = county.calls[:7]
        for call in revised:
            call.revisions.append((call.updated_at.replace(year=2031), {"priority": "1"}))  # type: ignore[union-attr]
            state.publish(call.cad_number, soql_row(call.latest()))
        await wait_for(lambda: _caught_up(cursors, name, state), timeout=60, what="revisions")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await runner.cleanup()
    assert killed_at is None or killed_at["t"] < max(r["data_updated_at"] for r in state.rows.values())
    events = await dispatch_events(rt, "SIMK")
    received = collections.Counter(e.subject for e in events if e.type == "cad.call.received.v4")
    assert len(received) == len(county.calls) and set(received.values()) == {1}
    revised_facts = collections.Counter(
        (e.subject, e.data["revision"]) for e in events if e.type == "cad.call.revised.v3"
    )
    assert len(revised_facts) == len(revised) and set(revised_facts.values()) == {1}
    assert len({e.id for e in events}) == len(events)
