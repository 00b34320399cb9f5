"""``python -m bench`` (``make bench``): the hub's throughput and memory, each operation
next to a baseline measured in the same process on the same records.

- ``EventLog.append`` — vs a raw idempotent aiokafka producer (same bytes, same batches);
- ``EventLog.replay`` — vs a raw ``getmany`` scan of the same topic;
- CAD CSV ingest through the connector runner (read, map, revision claims, append, dead
  letters), on new data and again on the same drop (every event a duplicate) — vs a raw
  aiokafka produce of the same rows as pre-serialized JSON;
- read-model rebuild (``projections.replay`` into a fresh schema) — vs raw ``getmany`` of
  the fact topics + one COPY of one trivial row per record;
- live projection (the faust path of ``hub project --until-caught-up``) on a smaller log —
  vs the batch rebuild of that same log;
- issue 14's targets (``bench/targets.py``): the event-id index's bytes per event, FHIR
  Bundles and REF^I12 built per core (vs the reference builders), live latency (p99 of
  append → read-model commit at a steady 100 records/s), and with ``--scale`` the rebuild
  at 100k / 1M / 3M events and live latency for a person with 10,000 facts.

The ``target`` and ``verdict`` columns hold each target of issue 14 and PASS / FAIL
against it; a target this run does not measure is listed as NOT RUN with the reason.

Columns: ``ratio`` = rate / baseline rate; ``peak MiB`` = this process's peak resident set
during the phase (its growth over the phase's start is in the JSON); ``measured`` = the value
a target is about when it is not the rate or ratio.

Every phase runs on its own topic prefix and schemas on the shared local broker and
database; all of them are removed at the end, also after a failure. Prints the table
and writes ``var/bench/latest.json`` (``state_dir/bench``). Rates depend on the machine
and on what else runs on it (on 2 cores the broker competes with the benchmark), so
compare ratios, and compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.phases import append_and_replay, cad_ingest_and_rebuild, copy_floor, live_projection
from bench.report import BenchError, Row, not_run, table
from bench.targets import builder_rows, index_growth, live_latency, scale_rebuild
from bench.workspace import Workspace
from hub.kernel.logs import configure_logging
from hub.kernel.settings import get_settings

PHASES = ("append", "index", "cad", "scale", "live", "latency", "builders")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="envelopes for append/replay")
    parser.add_argument("--batch", type=int, default=2000, help="envelopes per append")
    parser.add_argument("--cad-days", type=int, default=60, help="simulated days in the CSV drop")
    parser.add_argument("--cad-calls-per-day", type=int, default=500, help="CSV rows per day (about)")
    parser.add_argument("--live-days", type=int, default=5, help="simulated days for the live projection")
    parser.add_argument("--live-calls-per-day", type=int, default=400)
    parser.add_argument("--builders", type=int, default=20_000, help="referrals rendered per builder")
    parser.add_argument("--latency-seconds", type=float, default=15.0, help="length of the live feed")
    parser.add_argument("--latency-rate", type=int, default=100, help="records per second of the live feed")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also the large targets: rebuild at 100k/1M/3M events, live with a 10,000-fact person",
    )
    parser.add_argument(
        "--scale-sizes", default="100000,1000000,3000000", help="events of the --scale rebuilds"
    )
    parser.add_argument(
        "--index-sizes", default="100000,1000000,10000000",
        help="rows of the synthetic event-id index the --scale run probes the append's cost at",
    )
    parser.add_argument(
        "--index-sizes-quick", default="100000,1000000",
        help="the same without --scale",
    )
    parser.add_argument(
        "--heavy-facts", type=int, default=10_000, help="facts in the --scale person's history"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated phases to run (default: all of {', '.join(PHASES)})"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default: state_dir/bench/latest.json)"
    )
    return parser.parse_args(argv)


async def run(ws: Workspace, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix=f"{ws.run}-"))
    ws.dirs.append(tmp)
    try:
        want = set(args.only.split(",")) if args.only else set(PHASES)
        unknown = want - set(PHASES)
        if unknown:
            raise BenchError(f"unknown phases {sorted(unknown)} (known: {', '.join(PHASES)})")
        if "append" in want:
            rows += await append_and_replay(ws, args.records, args.batch)
        if "index" in want:
            sizes = args.index_sizes if args.scale else args.index_sizes_quick
            rows.append(await index_growth(ws, [int(x) for x in sizes.split(",")]))
        if "cad" in want:
            rows += await cad_ingest_and_rebuild(ws, tmp, args.cad_days, args.cad_calls_per_day)
        if args.scale and "scale" in want:
            for n in (int(x) for x in args.scale_sizes.split(",")):
                rows += await scale_rebuild(ws, n, copy_floor)
        else:
            rows.append(
                not_run("rebuild 100k/1M/3M events", "≤ 60 s per 1M, peak ≤ 500 MiB", "run with --scale")
            )
        if "live" in want:
            rows += await live_projection(ws, args.live_days, args.live_calls_per_day)
        if "latency" in want:
            rows.append(await live_latency(ws, args.latency_seconds, args.latency_rate, 0))
        if args.scale and "latency" in want:
            rows.append(await live_latency(ws, args.latency_seconds, args.latency_rate, args.heavy_facts))
        else:
            rows.append(not_run(
                "live p99, 10k-fact person", "p99 ≤ 250 ms at 100 rec/s", "run with --scale"
            ))
        if "builders" in want:
            rows += builder_rows(args.builders)
    finally:
        problems = await ws.cleanup()
        for p in problems:
            print(f"bench cleanup: {p}", file=sys.stderr)
    return rows


def summary(rows: list[Row]) -> list[str]:
    by = {r.operation: r for r in rows}
    lines = []
    replay = by.get("replay (EventLog)")
    if replay is not None:
        lines.append(
            f"EventLog.replay memory: {replay.sample.growth_mib:.0f} MiB over {replay.records:,} records = "
            f"{replay.extra['mib_per_10k_events']:.2f} MiB per 10k events (peak RSS growth)"
        )
    for name in ("cad ingest (connector)", "cad re-ingest (all dup)"):
        row = by.get(name)
        if row is not None:
            parts = ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in row.extra["breakdown"].items())
            lines.append(f"{name}: {parts}")
    rebuild = by.get("read-model rebuild")
    if rebuild is not None:
        lines.append(
            f"rebuild memory: {rebuild.sample.growth_mib:.0f} MiB over {rebuild.records:,} records = "
            f"{rebuild.extra['mib_per_10k_events']:.2f} MiB per 10k events (peak RSS growth)"
        )
        live = by.get("live projection (faust)")
        if live is not None and live.baseline_rps:
            lines.append(
                f"live projection: {live.rps:,.0f} rec/s end to end "
                f"({live.extra['start_and_join_seconds']:.1f} s of it faust start + group join) = "
                f"{live.rps / rebuild.rps:.3f} of the large rebuild's {rebuild.rps:,.0f} rec/s"
            )
    for r in rows:
        if "p99_ms" in r.extra:
            lines.append(
                f"{r.operation}: p50 {r.extra['p50_ms']:.0f} ms, p99 {r.extra['p99_ms']:.0f} ms, "
                f"max {r.extra['max_ms']:.0f} ms at {r.extra['fed_rate']:.0f} rec/s fed, "
                f"{r.extra['batches']} batches; longest GC pause {r.sample.gc_pause_max_ms:.0f} ms"
            )
        if "setup_seconds" in r.extra:
            lines.append(
                f"{r.operation}: setup {r.extra['setup_seconds']:.0f} s, rebuild {r.sample.seconds:.0f} s, "
                f"floor {r.baseline_sample.seconds if r.baseline_sample else 0:.0f} s, "
                f"{r.extra['mib_per_10k_events']:.2f} MiB per 10k events, "
                f"all processes at once {r.extra['all_processes_peak_mib']:.0f} MiB"
                + "".join(f", {k} {v:.0f} s" for k, v in r.extra.get("phase_seconds", {}).items())
            )
    passed = [r for r in rows if r.verdict == "PASS"]
    failed = [r.operation.strip() for r in rows if r.verdict == "FAIL"]
    skipped = [r.operation.strip() for r in rows if r.verdict == "NOT RUN"]
    lines.append(
        f"targets: {len(passed)} PASS, {len(failed)} FAIL ({', '.join(failed) or 'none'}), "
        f"{len(skipped)} NOT RUN ({', '.join(skipped) or 'none'})"
    )
    noisy = [
        r.operation.strip()
        for r in rows
        if r.sample.warnings or (r.baseline_sample is not None and r.baseline_sample.warnings)
    ]
    if noisy:
        lines.append("aiokafka warnings (retries) inside measured blocks of: " + ", ".join(noisy))
    per_phase = all(r.sample.per_phase for r in rows if r.verdict != "NOT RUN")
    lines.append(
        "peak MiB: this process's resident set, "
        + (
            "peak reset at the start of each phase (/proc/self/clear_refs)"
            if per_phase
            else "process-lifetime peak (ru_maxrss): upper bounds only"
        )
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(settings)
    ws = Workspace(settings)
    load = os.getloadavg()
    started = time.perf_counter()
    try:
        rows = asyncio.run(run(ws, args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(
        f"run {ws.run}: broker {settings.kafka.bootstrap}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} at the start, {elapsed:.0f} s in all"
    )
    print(table(rows))
    print()
    print("\n".join(summary(rows)))
    result = {
        "at": datetime.now(UTC).isoformat(),
        "run": ws.run,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "elapsed_seconds": round(elapsed, 1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [r.as_dict() for r in rows],
    }
    out = args.out or settings.state_dir / "bench" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
