"""``python -m hub.devtools.faults [--long] [--seed N] [--window-s S] [--kills K] [--keep]``
(``make faults``): the fault suite of :mod:`hub.devtools.faults.suite`. Prints the cluster,
the faults injected and five numbers — lost events, conflicting copies, read-model
differences, EHR duplicates, hung processes — and exits 0 only when all are 0 (1 otherwise,
2 when the suite itself could not run)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from hub.devtools.faults.suite import Suite, SuiteOptions


def main(
    long: bool = typer.Option(False, "--long", help="the release gate: every fault repeated, >= 20 SIGKILLs"),
    seed: int = typer.Option(13, "--seed", help="seeds the workload and the fault plan"),
    window_s: float = typer.Option(0.0, "--window-s", help="fault window (default: 45 s short, 240 s long)"),
    kills: int = typer.Option(0, "--kills", help="at least this many SIGKILLs of hub processes"),
    home: Path = typer.Option(None, "--home", help="working directory (default: a fresh temporary one)"),
    keep: bool = typer.Option(False, "--keep", help="keep the working directory (logs, data) afterwards"),
    base_port: int = typer.Option(19192, "--base-port", help="broker ports base..base+2, controllers +10"),
    pg_port: int = typer.Option(15432, "--pg-port"),
) -> None:
    """Run the hub under faults and compare against a clean run."""
    window = window_s or (240.0 if long else 45.0)
    opts = SuiteOptions(
        seed=seed,
        long=long,
        window_s=window,
        kills=kills,
        home=home,
        keep=keep,
        base_port=base_port,
        pg_port=pg_port,
        days=6 if long else 3,
        calls_per_day=80 if long else 60,
    )
    suite = Suite(opts, out=lambda line: print(line, flush=True))
    try:
        verdict = asyncio.run(suite.main())
    except Exception as exc:  # the suite could not run: say why, distinct from a failed verdict
        print(f"fault suite error: {type(exc).__name__}: {exc} (logs under {suite.home})", file=sys.stderr)
        suite.opts = opts.__class__(**{**opts.__dict__, "keep": True})
        suite.down()
        raise typer.Exit(2) from None
    suite.down()
    if not verdict.ok:
        print(f"logs and data kept under {suite.home}" if keep else "", flush=True)
    raise typer.Exit(0 if verdict.ok else 1)


if __name__ == "__main__":
    typer.run(main)
