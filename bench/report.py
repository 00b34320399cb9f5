"""Benchmark results: one row per operation next to its in-process baseline, rendered as
a text table and as the JSON written to ``var/bench/latest.json`` (pure code).

``ratio`` = operation rate / baseline rate, on the same records in the same process
and run: 1.0 means "as fast as the floor", 0.25 means "a quarter of the floor's rate".
The ratio, not the absolute rate, is the number to compare between machines and runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.measure import Sample


class BenchError(RuntimeError):
    """A phase processed other records than its baseline (the ratio would be meaningless)."""


def expect(condition: bool, message: str) -> None:
    """Stop the benchmark when a sanity check fails (a wrong count is a wrong benchmark)."""
    if not condition:
        raise BenchError(message)


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("inf")


@dataclass
class Row:
    """One measured operation and its baseline.

    ``records`` counts what the operation's rate is quoted in (CSV rows for ingest,
    log records for the reads); both sides count the same unit."""

    operation: str
    records: int
    sample: Sample
    baseline: str
    baseline_records: int
    baseline_sample: Sample
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return rate(self.records, self.sample.seconds)

    @property
    def baseline_rps(self) -> float:
        return rate(self.baseline_records, self.baseline_sample.seconds)

    @property
    def ratio(self) -> float:
        return self.rps / self.baseline_rps

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "records": self.records,
            "rps": round(self.rps, 1),
            **self.sample.as_dict(),
            "baseline": {
                "what": self.baseline,
                "records": self.baseline_records,
                "rps": round(self.baseline_rps, 1),
                **self.baseline_sample.as_dict(),
            },
            "ratio": round(self.ratio, 4),
            **self.extra,
        }


COLUMNS = (
    ("operation", "<", 26),
    ("records", ">", 9),
    ("seconds", ">", 9),
    ("rec/s", ">", 10),
    ("baseline rec/s", ">", 16),
    ("ratio", ">", 7),
    ("peak MiB", ">", 10),
    ("+MiB", ">", 7),
)


def table(rows: list[Row]) -> str:
    """The result table, then one legend line per row naming its baseline."""
    head = "".join(f"{name:{align}{width}}" for name, align, width in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = (
            r.operation,
            f"{r.records:,}",
            f"{r.sample.seconds:.2f}",
            f"{r.rps:,.0f}",
            f"{r.baseline_rps:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.sample.peak_mib:.0f}",
            f"{r.sample.growth_mib:.0f}",
        )
        lines.append("".join(f"{c:{a}{w}}" for c, (_, a, w) in zip(cells, COLUMNS, strict=True)))
    lines.append("")
    lines.append("baselines (same records, same process):")
    lines += [f"  {r.operation}: {r.baseline}" for r in rows]
    return "\n".join(lines)


def per_10k(mib: float, records: int) -> float:
    """MiB per 10,000 records (pure)."""
    return mib * 10_000 / records if records else 0.0
