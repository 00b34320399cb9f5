"""The projection commands as a user runs them: ``hub project --until-caught-up``,
``hub report --json``, ``hub timeline``, ``hub replay``; errors go to stderr with a
non-zero exit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT
from projections import tables as T
from projections.store import snapshot
from tests.integration.projections.projection_scenario import person, scenario

pytestmark = pytest.mark.integration


def hub(rt: Runtime, schema: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        {
            "HUB_KAFKA__TOPIC_PREFIX": rt.settings.kafka.topic_prefix,
            "HUB_POSTGRES__SCHEMA": schema,
            "HUB_AGENCY_TIMEZONE": "UTC",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "hub.entry.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    assert doc["report"] == "outcomes" and doc["version"] == 1 and doc["by"] == "month"
    bh = sum(1 for e in events if e.type.startswith("cad.call.received") and e.data["behavioral_health"])
    assert doc["headline"]["calls"] == {"value": bh, "share": None, "suppressed": False}
    for name in ("no_enforcement", "voluntary_transport", "enforcement", "repeat_three_plus_enrolled"):
        assert set(doc["headline"][name]) == {"value", "share", "suppressed"}
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
        assert {r["report_version"] for r in rows} in ({"1"}, {1}) and {r["by"] for r in rows} == {"month"}
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
