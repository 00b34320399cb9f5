"""The projection commands as a user runs them: ``hub project --until-caught-up``,
``hub report --json``, ``hub timeline``, ``hub replay``; errors go to stderr with a
non-zero exit."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.cad.ingest import ingest_files
from connectors.cad.profile import load_profile
from connectors.core.memory import MemoryLog
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from hub.kernel.vocabulary import VOCABULARIES_DIR, load_vocabularies, vocabulary_names
from projections import tables as T
from projections.store import snapshot
from tests.integration.hubcli import run_hub
from tests.integration.projections.projection_scenario import person, scenario

pytestmark = pytest.mark.integration
SEATTLE = PROJECT_ROOT / "tests" / "data" / "cad" / "seattle" / "call-data-sample.csv"


def hub(rt: Runtime, schema: str, *args: str, env_extra: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {"HUB_POSTGRES__SCHEMA": schema, "HUB_AGENCY_TIMEZONE": "UTC", **(env_extra or {})}
    return run_hub(rt.settings, *args, **env)


async def test_project_report_timeline_replay_commands(proj_rt: Runtime, tmp_path: Path) -> None:
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_cli"
    events = scenario(36, tag="9")
    await rt.log.append(events)

    done = hub(rt, schema, "project", "--until-caught-up", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["new_facts"] == len(events)

    report = hub(
        rt, schema, "report", "--json", "--by", "month", "--from", "2024-01-01", "--to", "2024-12-31"
    )
    assert report.returncode == 0, report.stderr[-2000:]
    doc = json.loads(report.stdout)
    assert doc["report"] == "outcomes" and doc["version"] == 2 and doc["by"] == "month"
    # the scenario's BH calls have the final type CRISIS (the fallback vocabulary's rule)
    received = [e for e in events if e.type.startswith("cad.call.received")]
    bh = sum(1 for e in received if e.data["call_type_final"] == "CRISIS")
    assert doc["headline"]["calls"] == {"value": bh, "share": None, "suppressed": False, "measured": True}
    for name in ("no_enforcement", "voluntary_transport", "enforcement", "repeat_three_plus_enrolled"):
        assert set(doc["headline"][name]) == {"value", "share", "suppressed", "measured"}
    assert doc["vocabulary"]["label"] == load_vocabularies().label
    cells = [c for r in doc["outcomes"]["rows"] for c in r["metrics"].values()] + list(
        doc["headline"].values()
    )
    assert all(c["value"] is None or c["value"] == 0 or c["value"] > 10 for c in cells)
    text = hub(rt, schema, "report")
    assert text.returncode == 0 and "no enforcement action" in text.stdout

    # the exports: one row per published cell, exactly the JSON document's values
    period = ("--by", "month", "--from", "2024-01-01", "--to", "2024-12-31")
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"report.{fmt}"
        written = hub(rt, schema, "report", *period, "--format", fmt, "--out", str(out))
        assert written.returncode == 0, written.stderr[-2000:]
        if fmt == "csv":
            with out.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            values = {(r["section"], r["group"], r["metric"]): r["value"] for r in rows}
        else:
            table = pq.read_table(out)
            assert table.schema.metadata[b"hub.vocabulary_version"] == b"1.0.0"
            rows = table.to_pylist()
            values = {(r["section"], r["group"], r["metric"]): r["value"] for r in rows}
        assert {r["report_version"] for r in rows} in ({"2"}, {2}) and {r["by"] for r in rows} == {"month"}
        for month in doc["outcomes"]["rows"]:
            for metric, cell in month["metrics"].items():
                got = values[("outcomes", month["group"], metric)]
                expected = cell["value"]
                assert (got in ("", None)) if expected is None else float(got) == expected, (fmt, metric)
        assert values[("headline", "all", "calls")] in (str(bh), float(bh))
    usage = hub(rt, schema, "report", "--format", "xlsx", "--out", str(tmp_path / "x"))
    assert usage.returncode == 2 and "csv or parquet" in usage.stderr

    incident = next(e.subject for e in events if e.type.startswith("cad.call.received"))
    timeline = hub(rt, schema, "timeline", "--incident", incident, "--purpose", "operations", "--json")
    assert timeline.returncode == 0, timeline.stderr[-2000:]
    entries = json.loads(timeline.stdout)["entries"]
    assert {e["event_id"] for e in entries} >= {e.id for e in events if e.subject == incident}
    who = hub(
        rt, schema, "timeline", "--person", person(1, "9"), "--purpose", "audit", "--json",
        "--role", "dispatcher",
    )
    assert who.returncode == 0, who.stderr[-2000:]
    doc = json.loads(who.stdout)
    assert doc["canonical"] == person(0, "9")  # linked to person 0
    assert doc["entries"] and all(e["system"] == "cad" for e in doc["entries"])

    replay = hub(rt, schema, "replay", "--into", f"{schema}_copy", "--json")
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert set(json.loads(replay.stdout)["seconds"]) == {"read", "plan", "load", "finish"}  # where it went
    tables = (*T.READ_MODELS, T.POSITIONS)
    assert await snapshot(rt.pool, f"{schema}_copy", tables) == await snapshot(rt.pool, schema, tables)

    for bad in (
        ("timeline",),
        ("report", "--by", "week"),
        ("replay", "--into", f"{schema}_copy"),
        ("replay", "--into", "x_y", "--as-of", "2024-01-01T00:00:00"),
    ):
        result = hub(rt, schema, *bad)
        assert result.returncode != 0 and result.stderr, bad
    missing = hub(rt, schema, "timeline", "--incident", "sea:nope", "--purpose", "audit")
    assert missing.returncode == 1 and "no such incident" in missing.stderr


async def test_a_vocabulary_fix_reclassifies_history_without_reingest(
    proj_rt: Runtime, tmp_path: Path
) -> None:
    """The operator's path: Seattle's sample is ingested and projected; the county corrects
    its vocabulary (a new version) and restarts the projector: past periods change, nothing
    is re-ingested, and the report states the new version. A content change that kept the
    version is refused and nothing is applied."""
    rt = proj_rt
    schema = f"{rt.settings.kafka.topic_prefix}_vocab"
    log = MemoryLog()
    await ingest_files([SEATTLE], load_profile("seattle"), log, DeadLetterSealer(bytes(32)))
    await rt.log.append(log.events)
    # an operator's view: no small-cell or zero-cell rule, so the test sees every count
    operator = {"HUB_PROJECTIONS__SMALL_CELL_MAX": "0", "HUB_PROJECTIONS__ATTRIBUTE_TOTAL_MAX": "0",
                "HUB_AGENCY_TIMEZONE": "America/Los_Angeles"}

    def report() -> dict:
        # the sample's calls are of 2018-2023 (the session's log holds other tests' 2024 calls)
        out = hub(rt, schema, "report", "--json", "--to", "2023-12-31", env_extra=operator)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    done = hub(rt, schema, "project", "--until-caught-up", "--json", env_extra=operator)
    assert done.returncode == 0, done.stderr[-2000:]
    before = report()
    # hand count (tests/unit/projections/test_incidents.py): 8 crisis calls, all no enforcement
    assert before["headline"]["calls"]["value"] == 8 and before["headline"]["enforcement"]["value"] == 0
    assert before["headline"]["voluntary_transport"]["measured"] is False
    assert "seattle@1" in before["vocabulary"]["label"]

    def release(release_id: str) -> dict:
        out = hub(rt, schema, "report", "--release", release_id, "--json", env_extra=operator)
        assert out.returncode == 0, out.stderr[-2000:]
        return {(r["area_kind"], r["metric"]): r["value"] for r in json.loads(out.stdout)["records"]}

    # the "OTHER REPORT MADE" crisis call is of March 2019 (queued 03/07/2019 4:58:11 PM)
    march = release("2019-03.r1")
    assert march[("all", "outcome.no_enforcement")] == 1 and march[("all", "outcome.arrest_or_citation")] == 0

    fixed = tmp_path / "seattle.yaml"
    text = (VOCABULARIES_DIR / "seattle.yaml").read_text()
    fixed.write_text(text.replace("version: 1", "version: 2").replace(
        "OTHER REPORT MADE: no_enforcement", "OTHER REPORT MADE: citation"))
    vocabularies = json.dumps([*(n for n in vocabulary_names() if n != "seattle"), str(fixed)])
    corrected = {**operator, "HUB_PROJECTIONS__VOCABULARIES": vocabularies}
    again = hub(rt, schema, "project", "--until-caught-up", "--json", env_extra=corrected)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["new_facts"] == 0  # nothing re-ingested, nothing re-read
    after = report()
    head = after["headline"]
    assert head["enforcement"]["value"] == 1 and head["no_enforcement"]["value"] == 7
    assert "seattle@2" in after["vocabulary"]["label"]

    # the correction is a new release of the month; what was published before is unchanged
    assert release("2019-03.r2")[("all", "outcome.arrest_or_citation")] == 1
    assert release("2019-03.r1") == march
    history = hub(rt, schema, "reports", "history", "--json", env_extra=operator)
    assert history.returncode == 0, history.stderr[-2000:]
    march_releases = [r for r in json.loads(history.stdout) if r["period"] == "2019-03"]
    assert [(r["release_id"], r["vocabulary"].count("seattle@")) for r in march_releases] == [
        ("2019-03.r1", 1), ("2019-03.r2", 1)]
    assert "seattle@1" in march_releases[0]["vocabulary"] and "seattle@2" in march_releases[1]["vocabulary"]

    # occurred through the end of 2019: 4 of the 8 crisis calls (2018-04, 2018-12, 2019-03,
    # 2019-06), whenever they were recorded
    through = hub(rt, schema, "replay", "--into", f"{schema}_2019", "--occurred-through",
                  "2019-12-31T23:59:59-08:00", "--json", env_extra=corrected)
    assert through.returncode == 0, through.stderr[-2000:]
    assert json.loads(through.stdout)["after_occurred_through"] > 0
    by_2019 = hub(rt, schema, "report", "--json", "--schema", f"{schema}_2019", env_extra=corrected)
    assert json.loads(by_2019.stdout)["headline"]["calls"]["value"] == 4

    fixed.write_text(text.replace("version: 1", "version: 2"))  # other content, same version
    refused = hub(rt, schema, "project", "--until-caught-up", env_extra=corrected)
    assert refused.returncode != 0 and "changed but its version is still 2" in refused.stderr
    assert report()["headline"]["enforcement"]["value"] == 1  # nothing applied
