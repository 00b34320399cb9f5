"""County-defined fields and metrics end to end, without a code change: a definitions file
and a CAD profile mapping a column to a custom field; ``hub ingest cad`` and ``hub project``
as a user runs them; the metric in ``hub report --json`` and the text report, the outcome
topic's release, the API (live for an auditor, the release for an analyst) and the
dashboard's data — hand-computed, suppressed like the built-in cells. Then a second
metric is added to the file (a new version) and appears everywhere after the next
``hub project``.

The feed (February 2024, all crisis calls, hand-counted):

=========  =======================  ======  =====
precinct   housing                  outcome  calls
=========  =======================  ======  =====
NORTH      unsheltered              hold       20
NORTH      unsheltered              none       15
NORTH      housed                   none       25
SOUTH      housed                   hold       15
SOUTH      housed                   none       30
SOUTH      unsheltered              hold       12
SOUTH      unsheltered              none       13
SOUTH      sheltered                none        3
=========  =======================  ======  =====

``unsheltered_holds``: holds among unsheltered people — 32 of 60 (NORTH 20 of 35, SOUTH 12
of 25). ``sheltered``: calls with a sheltered person, of all calls — 3 of 133: withheld
(and so is SOUTH's, NORTH's is 0).
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from connectors.cad.profile import load_profile_file
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.audit import AccessLog
from hub.kernel.kafka_io import scan_records
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT, CustomSettings
from schemas.topics import outcome_topic
from tests.integration.hubcli import run_hub

pytestmark = pytest.mark.integration

ROWS = [
    ("NORTH", "unsheltered", "INVOL", 20),
    ("NORTH", "unsheltered", "NOACT", 15),
    ("NORTH", "housed", "NOACT", 25),
    ("SOUTH", "housed", "INVOL", 15),
    ("SOUTH", "housed", "NOACT", 30),
    ("SOUTH", "Unsheltered", "INVOL", 12),  # the source's words: matched to the declared value
    ("SOUTH", "unsheltered", "NOACT", 13),
    ("SOUTH", "sheltered", "NOACT", 3),
]
FIELDS = """
fields:
  housing:
    type: enum
    values: [housed, sheltered, unsheltered]
    label: Housing status
    sources: [cad, intake]
"""
METRIC_1 = """
  - id: unsheltered_holds
    label: Involuntary holds among unsheltered people
    grain: month
    denominator: {housing: unsheltered}
    numerator: {housing: unsheltered, outcome: involuntary_hold}
"""
METRIC_2 = """
  - id: sheltered
    label: Calls with a sheltered person
    grain: month
    denominator: {}
    numerator: {housing: sheltered}
"""


def write_feed(
    tmp: Path, name: str = "calls.csv", housing_of: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """The county's profile (the generic layout plus a ``housing`` column) and its export
    ``name``; ``housing_of``: incident numbers whose housing a later export corrects."""
    generic = (PROJECT_ROOT / "connectors" / "cad" / "profiles" / "generic.yaml").read_text()
    profile = tmp / "county.yaml"
    profile.write_text(
        generic.replace("name: generic", "name: county_custom").replace(
            "  - status\n", "  - status\n  - housing\n"
        )
        + "vocabulary: generic\ncustom:\n  housing: housing\n"
    )
    export = tmp / name
    columns = [*load_profile_file(profile).columns]
    with export.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        n = 0
        for precinct, housing, code, count in ROWS:
            for _ in range(count):
                n += 1
                w.writerow(
                    {
                        "incident_number": f"C{n:04d}",
                        "received_at": f"2024-02-{1 + n % 27:02d}T10:00:00",
                        "call_type_final": "CRISIS",
                        "disposition_code": code,
                        "precinct": precinct,
                        "housing": (housing_of or {}).get(f"C{n:04d}", housing),
                    }
                )
    return profile, export


def hub(rt: Runtime, definitions: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_hub(
        rt.settings, *args, timeout=180,
        HUB_AGENCY_TIMEZONE="UTC", HUB_CUSTOM__DEFINITIONS=str(definitions),
    )


async def topic_cells(rt: Runtime) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    async for r in scan_records(
        rt.kafka, [outcome_topic(rt.settings.kafka.topic_prefix)], role="test-custom"
    ):
        if r.value is not None:
            latest[r.key.decode()] = json.loads(r.value)
    return latest


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    proj_rt: Runtime, issuer: DevIssuer, access_log: AccessLog, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    definitions = tmp_path / "county-metrics.yaml"
    definitions.write_text(f"name: test-county\nversion: 1\n{FIELDS}metrics:\n{METRIC_1}")
    settings = proj_rt.settings.model_copy(
        update={"custom": CustomSettings(definitions=str(definitions)), "agency_timezone": "UTC"}
    )
    app = create_app(
        settings,
        PostgresReadModels(settings, proj_rt.pool),
        access_log,
        TokenVerifier(settings, jwks=issuer.jwks()),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c, definitions


def bearer(issuer: DevIssuer, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(sub=f"{role}-1", role=role)}


async def test_a_metric_added_in_yaml_appears_in_report_topic_api_and_dashboard(
    proj_rt: Runtime, api: tuple[httpx.AsyncClient, Path], issuer: DevIssuer, tmp_path: Path
) -> None:
    rt = proj_rt
    client, definitions = api
    profile, export = write_feed(tmp_path)

    ingest = hub(rt, definitions, "ingest", "cad", "--profile", str(profile), str(export))
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert json.loads(ingest.stdout)["appended"] > 0
    done = hub(rt, definitions, "project", "--until-caught-up", "--json")
    assert done.returncode == 0, done.stderr[-2000:]

    report = hub(rt, definitions, "report", "--json", "--by", "area")
    assert report.returncode == 0, report.stderr[-2000:]
    doc = json.loads(report.stdout)
    assert doc["custom_metrics"]["definitions"] == "test-county@1"
    assert [m["id"] for m in doc["custom_metrics"]["metrics"]] == ["unsheltered_holds"]
    total = doc["outcomes"]["total"]
    assert total["calls"]["value"] == 133
    cell = total["custom.unsheltered_holds"]
    assert {k: cell[k] for k in ("value", "share", "suppressed", "measured")} == {
        "value": 32,
        "share": round(32 / 60, 4),
        "suppressed": False,
        "measured": True,
    }
    # a county cell has its rate per 1,000 calls for service like every cell
    assert cell["rate_per_1000_calls"] == round(32_000 / total["all_calls"]["value"], 1)
    assert total["custom.unsheltered_holds.denominator"]["value"] == 60
    rows = {r["group"]: r["metrics"] for r in doc["outcomes"]["rows"]}
    assert rows["NORTH"]["custom.unsheltered_holds"]["value"] == 20
    assert rows["SOUTH"]["custom.unsheltered_holds.denominator"]["value"] == 25
    assert "custom.unsheltered_holds" in doc["metrics"]
    text = hub(rt, definitions, "report")
    assert text.returncode == 0 and "Involuntary holds among unsheltered people" in text.stdout
    assert "53.3%" in text.stdout

    cells = await topic_cells(rt)
    assert cells["custom.unsheltered_holds|2024-02|all:all"]["value"] == 32
    assert cells["custom.unsheltered_holds|2024-02|all:all"]["share"] == round(32 / 60, 4)
    assert cells["custom.unsheltered_holds.denominator|2024-02|precinct:NORTH"]["value"] == 35
    assert all(c["value"] is None or c["value"] == 0 or c["value"] > 10 for c in cells.values())

    analyst = bearer(issuer, "analyst")
    released = (await client.get("/v1/reports/outcomes", headers=analyst)).json()
    assert released["release"] == "2024-02.r1"
    assert released["custom_metrics"]["definitions"] == "test-county@1"
    assert released["outcomes"]["total"]["custom.unsheltered_holds"]["value"] == 32
    live = (await client.get("/v1/reports/outcomes", headers=bearer(issuer, "auditor"))).json()
    assert live["outcomes"]["total"]["custom.unsheltered_holds"]["value"] == 32
    board = (await client.get("/v1/dashboard", headers=analyst)).json()
    assert board["custom_definitions"] == "test-county@1"
    assert [(c["label"], c["numerator"], c["denominator"]) for c in board["custom_metrics"]] == [
        ("Involuntary holds among unsheltered people", 32, 60)
    ]

    # a second metric, added in the file (a new version): no code change, one more `hub project`
    definitions.write_text(f"name: test-county\nversion: 2\n{FIELDS}metrics:\n{METRIC_1}{METRIC_2}")
    again = hub(rt, definitions, "project", "--until-caught-up", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    doc = json.loads(hub(rt, definitions, "report", "--json", "--by", "area").stdout)
    total = doc["outcomes"]["total"]
    assert doc["custom_metrics"]["definitions"] == "test-county@2"
    assert total["custom.sheltered"]["suppressed"] and total["custom.sheltered"]["value"] is None  # 3 calls
    assert total["custom.sheltered.denominator"]["value"] == 133
    rows = {r["group"]: r["metrics"] for r in doc["outcomes"]["rows"]}
    assert rows["NORTH"]["custom.sheltered"]["value"] == 0 and rows["SOUTH"]["custom.sheltered"]["suppressed"]
    cells = await topic_cells(rt)
    assert cells["custom.sheltered|2024-02|all:all"]["suppressed"]
    assert cells["custom.sheltered|2024-02|all:all"]["release"] == "2024-02.r2"
    assert cells["custom.sheltered.denominator|2024-02|all:all"]["value"] == 133
    released = (await client.get("/v1/reports/outcomes", headers=analyst)).json()
    assert (
        released["release"] == "2024-02.r2" and released["custom_metrics"]["definitions"] == "test-county@2"
    )
    board = (await client.get("/v1/dashboard", headers=analyst)).json()
    assert [c["key"] for c in board["custom_metrics"]] == ["custom.unsheltered_holds", "custom.sheltered"]
    assert board["custom_metrics"][1]["numerator"] is None  # suppressed, as published


async def test_a_county_field_corrected_in_a_later_export_moves_the_metric(
    proj_rt: Runtime, tmp_path: Path
) -> None:
    """The second export of the same feed corrects one call's housing (C0061, SOUTH, a hold:
    housed -> unsheltered): the CAD revision carries the corrected value, so after
    ``hub project`` the metric counts it — 33 holds of 61 unsheltered (SOUTH 13 of 26,
    NORTH unchanged at 20 of 35), where the first export gave 32 of 60 (SOUTH 12 of 25)."""
    rt = proj_rt
    definitions = tmp_path / "county-metrics.yaml"
    definitions.write_text(f"name: test-county\nversion: 1\n{FIELDS}metrics:\n{METRIC_1}")

    def metric() -> dict[str, tuple[int, int]]:
        done = hub(rt, definitions, "project", "--until-caught-up", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        report = hub(rt, definitions, "report", "--json", "--by", "area")
        assert report.returncode == 0, report.stderr[-2000:]
        doc = json.loads(report.stdout)
        outcomes = doc["outcomes"]
        groups = {"all": outcomes["total"]} | {r["group"]: r["metrics"] for r in outcomes["rows"]}
        holds, of = "custom.unsheltered_holds", "custom.unsheltered_holds.denominator"
        return {g: (m[holds]["value"], m[of]["value"]) for g, m in groups.items()}

    profile, first = write_feed(tmp_path, "calls-1.csv")
    ingest = hub(rt, definitions, "ingest", "cad", "--profile", str(profile), str(first))
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert metric() == {"all": (32, 60), "NORTH": (20, 35), "SOUTH": (12, 25)}

    _, second = write_feed(tmp_path, "calls-2.csv", housing_of={"C0061": "unsheltered"})
    ingest = hub(rt, definitions, "ingest", "cad", "--profile", str(profile), str(second))
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert json.loads(ingest.stdout)["appended"] == 1  # one CallRevised: the other rows are unchanged
    assert metric() == {"all": (33, 61), "NORTH": (20, 35), "SOUTH": (13, 26)}


async def test_a_profile_naming_an_undeclared_field_is_refused(proj_rt: Runtime, tmp_path: Path) -> None:
    definitions = tmp_path / "defs.yaml"
    definitions.write_text(
        "name: c\nversion: 1\nfields:\n  other:\n    type: boolean\n    label: O\n    sources: [intake]\n"
    )
    profile, export = write_feed(tmp_path)
    out = hub(proj_rt, definitions, "ingest", "cad", "--profile", str(profile), str(export))
    assert out.returncode == 1
    assert "custom field 'housing' is not declared" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"name: c\nversion: 1\n{FIELDS}metrics:\n  - id: x\n    label: X\n"
        "    denominator: {housing: homeless}\n    numerator: {housing: homeless}\n"
    )
    out = hub(proj_rt, bad, "report", "--json")
    assert out.returncode == 1
    assert (
        "bad.yaml:13: metric 'x': denominator: field 'housing': value 'homeless' is not allowed" in out.stderr
    )
