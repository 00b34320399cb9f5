"""The report's CSV and Parquet exports (pure): one row per published cell with the same
value as the document — a suppressed cell stays empty, nothing is recounted — and a header
naming the report version, the vocabulary version and the release."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from projections import reporting
from projections.export import COLUMNS, VOCABULARY_VERSION, release, rows, to_csv, to_parquet

T0 = datetime(2024, 3, 10, 12, tzinfo=UTC)


def document() -> dict:
    incidents = [
        {
            "incident_id": f"i{n}",
            "received_at": T0 + timedelta(days=n % 40),
            "call_category": "behavioral_health",
            "behavioral_health": True,
            "precinct": None,
            "district": "D1" if n % 3 else "D2",
            "outcome": ("no_enforcement", "voluntary_transport", "arrest_or_citation")[
                n % 3 if n < 60 else 0
            ],
            "referral_made": n % 4 == 0,
            "connected_to_services": n % 5 == 0,
            "co_responder": True,
            "response_seconds": 300.0,
            "time_on_scene_seconds": 900.0,
            "officer_time_returned_seconds": None,
            "use_of_force": "none" if n % 7 else "restraints",
        }
        for n in range(90)
    ]
    doc = reporting.report_document(
        table=reporting.outcome_table(incidents, by="month", tz="UTC", small_cell_max=10),
        repeat=reporting.repeat_table([(1, False)] * 40 + [(3, True)] * 12 + [(4, False)] * 3, 10),
        times=reporting.response_times(incidents, 10),
        funnel=reporting.referral_funnel([], 10),
        force=reporting.use_of_force_table(incidents, by="month", tz="UTC", small_cell_max=10),
        by="month",
    )
    return doc


def test_every_published_cell_is_a_row_with_the_same_value() -> None:
    doc = document()
    out = rows(doc)
    by_key = {(r["section"], r["group"], r["metric"]): r for r in out}
    assert len(by_key) == len(out)  # one row per cell
    for month in doc["outcomes"]["rows"]:
        for metric, cell in month["metrics"].items():
            r = by_key[("outcomes", month["group"], metric)]
            assert (r["value"], r["share"], r["suppressed"]) == (
                cell["value"],
                cell["share"],
                cell["suppressed"],
            )
    assert (
        by_key[("repeat_encounters", "all", "three_plus_enrolled")]["value"] is None
    )  # 3+ not enrolled is small
    assert any(r["suppressed"] for r in out) and not [
        r for r in out if r["suppressed"] and r["value"] is not None
    ]
    published = sorted(v for _, v in reporting.published_cells(doc))
    exported = sorted(
        int(r["value"])
        for r in out
        if r["value"] is not None and not r["metric"].endswith((".median", ".p90", ".total"))
    )
    assert exported == published  # the same counts, nothing more, nothing less
    assert {r["section"] for r in out} >= {"headline", "outcomes", "use_of_force", "response_times"}


def test_csv_and_parquet_carry_the_header_and_the_same_rows() -> None:
    doc = document()
    expected = rows(doc)
    parsed = list(csv.DictReader(io.StringIO(to_csv(doc).decode())))
    assert list(parsed[0]) == list(COLUMNS)
    assert {(r["report_version"], r["vocabulary_version"], r["release"]) for r in parsed} == {
        ("1", VOCABULARY_VERSION, release())
    }
    assert [r["value"] for r in parsed] == ["" if r["value"] is None else str(r["value"]) for r in expected]
    table = pq.read_table(io.BytesIO(to_parquet(doc)))
    assert table.column_names == list(COLUMNS)
    assert table.schema.metadata[b"hub.vocabulary_version"] == VOCABULARY_VERSION.encode()
    assert table.column("value").to_pylist() == [
        None if r["value"] is None else float(r["value"]) for r in expected
    ]
