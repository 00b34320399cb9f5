"""Re-driving CAD dead letters maps with the profile the connector actually used (the defect
of issue 10: a re-driven record lost the county's overrides and landed in ``SFPD:…`` instead
of ``COUNTY:…``, and a profile given as a YAML path was not found at all). Real components,
the real ``hub deadletters retry`` / ``hub ingest cad`` commands, Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from connectors.cad.profile import load_profile
from connectors.cad.used_profile import resolve_profile
from connectors.components import CadFileDropConfig, CadSoqlPollerConfig, cad_file_drop, cad_soql_poller
from connectors.core.recorded import MapperConfigStore, is_config_ref
from connectors.core.state import STATE_MIGRATIONS
from hub.devtools.simulate.feeds import soql_row
from hub.devtools.simulate.model import CountyModel
from hub.devtools.simulate.servers import FeedState, cad_feed_app, serve
from hub.kernel.deadletters import DeadLetterStore
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from schemas.topics import fact_topic
from tests.integration.hubcli import run_hub
from tests.integration.waiting import wait_for

SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"
MIGRATIONS_DIR = STATE_MIGRATIONS.directory
ROWS = 3


def write_profile(path: Path, base: str, **changes: Any) -> Path:
    """A county's profile file: bundled ``base`` with ``changes``."""
    path.write_text(yaml.safe_dump({**load_profile(base).model_dump(mode="json"), **changes}))
    return path


async def received(rt: Runtime, source: str) -> list[str]:
    """The incident ids of the ``CallReceived`` facts of ``source`` in the log."""
    out = []
    async for ev in rt.log.read([fact_topic(rt.settings.kafka.topic_prefix, "dispatch")]):
        if ev.envelope.source == source and ev.envelope.type.startswith("cad.call.received."):
            out.append(ev.envelope.subject)
    return sorted(out)


async def drain(component: Any, dead_letters: int) -> None:
    """Run ``component`` until it has dead-lettered ``dead_letters`` records."""

    async def done() -> bool:
        return bool(component.runner.totals.dead_lettered >= dead_letters)

    await component.start()
    try:
        await wait_for(done, what=f"{dead_letters} dead letters")
    finally:
        await component.stop()


async def retry(rt: Runtime, source: str) -> list[dict[str, Any]]:
    done = await asyncio.to_thread(
        run_hub, rt.settings, "deadletters", "retry", "--all", "--source", source, "--json"
    )
    return list(json.loads(done.stdout)["results"])


async def sf_feed(seed: int) -> tuple[Any, int]:
    county = CountyModel(seed=seed, days=1, calls_per_day=20, malformed_share=0).generate()
    state = FeedState()
    for call in county.calls[:ROWS]:
        state.publish(call.cad_number, soql_row(call))
    return await serve(cad_feed_app(state))


async def test_a_county_override_survives_redrive(log_rt: Runtime, tmp_path: Path) -> None:
    """The county maps an SF-style feed with its copy of ``san_francisco`` and
    ``overrides: {agency: COUNTY}``; the copy lacks the feed's ISO times, so every row is
    dead-lettered. Once the file is fixed, ``hub deadletters retry`` maps them into
    ``COUNTY:…`` incidents (the bundled profile of the same name would give ``SFPD:…``)."""
    tag = uuid.uuid4().hex[:8]
    source = f"cad/it-county-{tag}"
    sf = load_profile("san_francisco")
    no_iso = sf.time_formats[1:]
    county_profile = write_profile(tmp_path / "county-sf.yaml", "san_francisco", time_formats=no_iso)
    server, port = await sf_feed(31)
    config = CadSoqlPollerConfig(
        name=f"it-county-{tag}", url=f"http://127.0.0.1:{port}/resource/calls.json",
        profile=str(county_profile), overrides={"agency": "COUNTY"}, source=source, interval=0.05,
    )
    try:
        await drain(cad_soql_poller(log_rt, config), ROWS)
    finally:
        await server.cleanup()
    letters = await DeadLetterStore(log_rt.pool, log_rt.settings.core_schema).list(source=source)
    assert len(letters) == ROWS and await received(log_rt, source) == []
    ref = letters[0].record.profile
    assert ref is not None and is_config_ref(ref) and ref.startswith("san_francisco@sha256:")

    # re-driven before the fix: the county's (still broken) profile, not the bundled one
    before = await retry(log_rt, source)
    assert [r["ok"] for r in before] == [False] * ROWS and "unparseable time" in before[0]["error"]

    write_profile(county_profile, "san_francisco")  # the mapping is fixed: ISO times again
    after = await retry(log_rt, source)
    assert [r["ok"] for r in after] == [True] * ROWS, after
    incidents = await received(log_rt, source)
    assert len(incidents) == ROWS and all(i.startswith("COUNTY:") for i in incidents), incidents


async def test_a_yaml_path_profile_is_found_on_redrive(log_rt: Runtime, tmp_path: Path) -> None:
    """A file drop mapped with the county's own profile file (a name no bundled profile has)."""
    tag = uuid.uuid4().hex[:8]
    source = f"cad/it-ourco-{tag}"
    path = write_profile(tmp_path / "our-county.yaml", "seattle", name="our_county", agency="OURCO",
                        time_formats=["iso"])
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "calls.csv").write_text("\n".join(SEATTLE.read_text().splitlines()[: ROWS + 1]) + "\n")
    config = CadFileDropConfig(name=f"it-ourco-{tag}", directory=folder, profile=str(path), source=source,
                               interval=0.05, settle=0)
    await drain(cad_file_drop(log_rt, config), ROWS)
    (letter, *_) = await DeadLetterStore(log_rt.pool, log_rt.settings.core_schema).list(source=source)
    assert letter.record.profile is not None and letter.record.profile.startswith("our_county@sha256:")

    write_profile(path, "seattle", name="our_county", agency="OURCO")  # the mapping is fixed
    results = await retry(log_rt, source)
    assert [r["ok"] for r in results] == [True] * ROWS, results
    incidents = await received(log_rt, source)
    assert len(incidents) == ROWS and all(i.startswith("OURCO:") for i in incidents), incidents


async def test_hub_ingest_cad_with_a_profile_path_redrives(log_rt: Runtime, tmp_path: Path) -> None:
    """``hub ingest cad --profile FILE.yaml``: its dead letters name the recorded profile too."""
    tag = uuid.uuid4().hex[:8]
    source = f"cad/it-ingest-{tag}"
    path = write_profile(tmp_path / "our-county.yaml", "seattle", name="our_county", agency="INGCO",
                        time_formats=["iso"])
    export = tmp_path / "calls.csv"
    export.write_text("\n".join(SEATTLE.read_text().splitlines()[: ROWS + 1]) + "\n")
    ingested = await asyncio.to_thread(
        run_hub, log_rt.settings, "ingest", "cad", "--profile", str(path), "--source", source, str(export)
    )
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["dead_lettered"] == ROWS

    write_profile(path, "seattle", name="our_county", agency="INGCO")
    results = await retry(log_rt, source)
    assert [r["ok"] for r in results] == [True] * ROWS, results
    assert all(i.startswith("INGCO:") for i in await received(log_rt, source))


async def test_a_bundled_profile_with_overrides_is_recorded_and_listed_by_name(log_rt: Runtime) -> None:
    """The bundled ``san_francisco`` with the county's overrides: the dead letter of a damaged
    row names the recorded profile, which resolves with the overrides; ``--source`` still
    matches the profile's name."""
    tag = uuid.uuid4().hex[:8]
    source = f"cad/it-bundled-{tag}"
    county = CountyModel(seed=32, days=1, calls_per_day=20, malformed_share=0).generate()
    state = FeedState()
    bad = soql_row(county.calls[0]) | {"received_datetime": "24/13/2024 25:61"}
    state.publish(county.calls[0].cad_number, bad)
    server, port = await serve(cad_feed_app(state))
    config = CadSoqlPollerConfig(
        name=f"it-bundled-{tag}", url=f"http://127.0.0.1:{port}/resource/calls.json",
        overrides={"agency": "COUNTY", "dispositions": {"VTX": "voluntary_transport"}}, source=source,
        interval=0.05,
    )
    try:
        await drain(cad_soql_poller(log_rt, config), 1)
    finally:
        await server.cleanup()
    (letter,) = await DeadLetterStore(log_rt.pool, log_rt.settings.core_schema).list(source=source)
    ref = letter.record.profile
    assert ref is not None and ref == config.used_profile().ref
    profile = await resolve_profile(MapperConfigStore(log_rt.pool, log_rt.settings.core_schema), ref)
    assert profile.agency == "COUNTY" and profile.dispositions["VTX"] == "voluntary_transport"
    listed = await asyncio.to_thread(
        run_hub, log_rt.settings, "deadletters", "list", "--json", "--source", "san_francisco"
    )
    assert letter.record.id in {i["id"] for i in json.loads(listed.stdout)["items"]}
