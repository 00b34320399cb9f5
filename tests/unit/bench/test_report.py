"""The benchmark table: every target with its verdict, rates per wall or CPU second, and
the JSON written next to it."""

from __future__ import annotations

from bench.measure import Sample
from bench.report import FAIL, NOT_RUN, PASS, Row, not_run, ratio_text, table, verdict


def test_the_table_lists_every_target_with_its_verdict_and_the_json_holds_the_same() -> None:
    ingest = Row("cad ingest", 1000, Sample(seconds=0.5, peak_mib=120), "raw", 1000, Sample(seconds=0.1),
                 target="≥ 20,000 rows/s", verdict=verdict(False))
    builders = Row("HL7 built", 100, Sample(seconds=9.0, cpu_seconds=0.01), "reference", 10,
                   Sample(seconds=1.0, cpu_seconds=1.0), per_cpu=True, target="≥ 10,000/s", verdict=PASS)
    latency = Row("live p99", 300, Sample(seconds=3.0), measured="p99 180 ms", target="p99 ≤ 250 ms",
                  verdict=PASS)
    skipped = not_run("rebuild 3M", "≤ 500 MiB", "run with --scale")
    rows = [ingest, builders, latency, skipped]
    text = table(rows)
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert ingest.ratio == 0.2 and "0.200" in lines["cad ingest"]
    assert lines["cad ingest"].rstrip().endswith(FAIL)
    assert builders.rps == 10_000 and builders.ratio == 1000  # per CPU-second, not per wall second
    assert "10,000*" in lines["HL7 built"]
    assert latency.ratio is None and "p99 180 ms" in lines["live p99"]
    assert lines["rebuild 3M"].rstrip().endswith(NOT_RUN) and "run with --scale" in text
    doc = [r.as_dict() for r in rows]
    assert [d["verdict"] for d in doc] == [FAIL, PASS, PASS, NOT_RUN]
    assert doc[0]["baseline"]["rps"] == 10_000 and "baseline" not in doc[2]
    assert doc[3]["rps"] is None and doc[1]["rate_per"] == "cpu_second"


def test_a_ratio_just_under_its_target_never_prints_as_the_target() -> None:
    assert ratio_text(0.1971) == "0.197"  # a 2-decimal table showed 0.20 next to a FAIL
    assert ratio_text(1.72) == "1.72" and ratio_text(645.161) == "645.16" and ratio_text(None) == ""
