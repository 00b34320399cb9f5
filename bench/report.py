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


PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


@dataclass
class Row:
    """One measured operation, its baseline (when it has one) and the issue's target.

    ``records`` counts what the operation's rate is quoted in (CSV rows for ingest,
    log records for the reads); both sides count the same unit. ``per_cpu``: the rate is
    per CPU-second of this process (work per core) rather than per wall second.
    ``target`` is the issue's target in words, ``verdict`` PASS / FAIL / NOT RUN (empty:
    the row has no target, it is context), ``measured`` the value the target is about
    when that is not the rate or the ratio (a latency, bytes per event, a peak)."""

    operation: str
    records: int
    sample: Sample
    baseline: str | None = None
    baseline_records: int = 0
    baseline_sample: Sample | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    verdict: str = ""
    measured: str = ""
    per_cpu: bool = False

    @property
    def rps(self) -> float:
        return rate(self.records, self.sample.cpu_seconds if self.per_cpu else self.sample.seconds)

    @property
    def baseline_rps(self) -> float | None:
        if self.baseline_sample is None:
            return None
        b = self.baseline_sample
        return rate(self.baseline_records, b.cpu_seconds if self.per_cpu else b.seconds)

    @property
    def ratio(self) -> float | None:
        base = self.baseline_rps
        return None if base is None or not self.records else self.rps / base

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        out: dict[str, Any] = {
            "operation": self.operation,
            "records": self.records,
            "rps": round(self.rps, 1) if self.records and self.sample.seconds > 0 else None,
            "rate_per": "cpu_second" if self.per_cpu else "wall_second",
            **self.sample.as_dict(),
            "ratio": None if ratio is None else round(ratio, 4),
            "target": self.target or None,
            "verdict": self.verdict or None,
            "measured": self.measured or None,
            **self.extra,
        }
        if self.baseline_sample is not None:
            out["baseline"] = {
                "what": self.baseline,
                "records": self.baseline_records,
                "rps": round(self.baseline_rps or 0.0, 1),
                **self.baseline_sample.as_dict(),
            }
        return out


def not_run(operation: str, target: str, why: str) -> Row:
    """A target this run did not measure (the reason goes into the JSON and the legend)."""
    return Row(operation, 0, Sample(), why, target=target, verdict=NOT_RUN)


COLUMNS = (
    ("operation", "<", 31),
    ("records", ">", 10),
    ("seconds", ">", 9),
    ("rec/s", ">", 9),
    ("baseline/s", ">", 11),
    ("ratio", ">", 8),
    ("peak MiB", ">", 9),
    ("measured", ">", 14),
    ("target", "<", 34),
    ("verdict", "<", 8),
)


def ratio_text(ratio: float | None) -> str:
    """A ratio as the table prints it: three decimals below 1, so that a ratio just under
    a target (0.197 against 0.20) never reads as the target itself."""
    if ratio is None:
        return ""
    return f"{ratio:.3f}" if ratio < 1 else f"{ratio:.2f}"


def table(rows: list[Row]) -> str:
    """The result table, then one legend line per row naming its baseline."""
    head = " ".join(f"{name:{align}{width}}" for name, align, width in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        ran = r.verdict != NOT_RUN
        timed = ran and r.sample.seconds > 0
        base, ratio = r.baseline_rps, r.ratio
        cells = (
            r.operation,
            f"{r.records:,}" if ran else "",
            f"{r.sample.seconds:.2f}" if timed else "",
            f"{r.rps:,.0f}{'*' if r.per_cpu else ''}" if timed and r.records else "",
            f"{base:,.0f}" if base is not None else "",
            ratio_text(ratio),
            f"{r.sample.peak_mib:.0f}" if timed else "",
            r.measured,
            r.target,
            r.verdict,
        )
        # one space between cells: a cell wider than its column never runs into the next one
        lines.append(" ".join(f"{c:{a}{w}}" for c, (_, a, w) in zip(cells, COLUMNS, strict=True)))
    lines.append("")
    lines.append("* rate per CPU-second of the benchmark process (work per core)")
    lines.append("baselines (same records, same process) and reasons:")
    lines += [f"  {r.operation.strip()}: {r.baseline}" for r in rows if r.baseline]
    return "\n".join(lines)


def per_10k(mib: float, records: int) -> float:
    """MiB per 10,000 records (pure)."""
    return mib * 10_000 / records if records else 0.0
