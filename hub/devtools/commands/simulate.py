"""``hub simulate``: a seeded county serving a CAD feed and a case-system API, or
writing CSV drops (servers listen on 127.0.0.1 only).

- ``hub simulate cad-feed --port 8701`` — SoQL feed at ``/resource/calls.json``;
- ``hub simulate cases --port 8702`` — case records at ``/api/v1/case-records``;
- ``hub simulate csv --profile seattle --out DIR`` — one CSV export per simulated day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import typer
from aiohttp import web

from connectors.cad.profile import load_profile
from hub.devtools.ehr_sim.cli import ehr
from hub.devtools.simulate.feeds import csv_table, soql_row
from hub.devtools.simulate.model import County, CountyModel, SimCall
from hub.devtools.simulate.servers import FeedState, cad_feed_app, cases_app, serve
from hub.kernel.output import emit_json

app = typer.Typer(help="Feed simulators for demos and tests.", no_args_is_help=True)

SEED = typer.Option(7, "--seed", help="model seed (same seed, same county)")
DAYS = typer.Option(7, "--days", help="days of traffic")
START = typer.Option("2024-03-01", "--start", help="first day (YYYY-MM-DD)")
PER_DAY = typer.Option(400, "--calls-per-day")


def _county(seed: int, days: int, start: str, per_day: int) -> County:
    return CountyModel(seed, days, date.fromisoformat(start), calls_per_day=per_day).generate()


def _serve_feed(
    make_app: Callable[[FeedState], web.Application], rows: Iterable[tuple[str, dict[str, Any]]], port: int
) -> None:
    """Serve ``rows`` (key, row) through ``make_app(FeedState)`` until interrupted."""

    state = FeedState()
    for key, row in rows:
        state.publish(key, row)

    async def forever() -> None:
        runner, bound = await serve(make_app(state), port)
        emit_json({"listening": f"http://127.0.0.1:{bound}"}, compact=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(forever())


@app.command("cad-feed")
def cad_feed(
    port: int = typer.Option(8701, "--port"),
    seed: int = SEED,
    days: int = DAYS,
    start: str = START,
    calls_per_day: int = PER_DAY,
) -> None:
    """Serve the county's calls (latest revision of each) as an SF-style SoQL feed."""

    county = _county(seed, days, start, calls_per_day)
    rows = ((call.cad_number, soql_row(call.latest(), county.timezone)) for call in county.calls)
    _serve_feed(cad_feed_app, rows, port)


@app.command("cases")
def cases(
    port: int = typer.Option(8702, "--port"),
    seed: int = SEED,
    days: int = DAYS,
    start: str = START,
    calls_per_day: int = PER_DAY,
) -> None:
    """Serve the county's case-management records as a REST API (``updated_since``)."""

    county = _county(seed, days, start, calls_per_day)
    _serve_feed(cases_app, ((str(rec["record_id"]), rec) for rec in county.case_records), port)


@app.command("csv")
def csv_drops(
    out: Path = typer.Option(..., "--out"),
    profile: str = typer.Option("generic", "--profile"),
    seed: int = SEED,
    days: int = DAYS,
    start: str = START,
    calls_per_day: int = PER_DAY,
) -> None:
    """Write one CSV export per day in a profile's layout (about 1 % damaged rows)."""

    county = _county(seed, days, start, calls_per_day)
    prof = load_profile(profile)
    out.mkdir(parents=True, exist_ok=True)
    by_day: dict[str, list[SimCall]] = {}
    for call in county.calls:
        by_day.setdefault(call.cad_number[:5], []).append(call)
    written = []
    for day, calls in sorted(by_day.items()):
        path = out / f"{prof.name}-{day}.csv"
        path.write_text(csv_table(calls, prof), encoding="utf-8")
        written.append(str(path))
    emit_json({"files": written, "calls": len(county.calls)})

# the EHR simulator (hub.devtools.ehr_sim): `hub simulate ehr`
app.command("ehr")(ehr)
