"""The co-responder app of the fault suite: ``python -m hub.devtools.faults.app`` appends the
seeded county's encounter facts and referral requests (:func:`encounter_events`) in small
paced batches, as the app's backend would, and exits 0 when all are in the log.

Deterministic ids and sealed fields with synthetic nonces make it restartable at any point:
a run killed in the middle is simply started again, and everything already appended is a
duplicate (byte-identical when an acknowledged copy was left unindexed). The pace applies to
batches that appended something: a restarted app goes through what it already appended at
once, so a restart adds only the time the app was down, not a re-paced replay (paced again
from the first batch, a crash near the end of the fault window pushed the job's end past the
suite's quiescence deadline).
"""

from __future__ import annotations

import asyncio
from datetime import date

import typer

from hub.bootstrap import open_runtime
from hub.devtools.simulate.feeds import encounter_events
from hub.devtools.simulate.model import County, CountyModel
from hub.kernel.output import emit_json
from hub.kernel.settings import get_settings


def county(seed: int, days: int, start: str, per_day: int) -> County:
    """The suite's county (the same one ``hub simulate csv`` writes for the same options)."""
    return CountyModel(seed, days, date.fromisoformat(start), calls_per_day=per_day).generate()


async def _append(model: County, batch: int, pace_s: float) -> dict[str, int]:
    appended = duplicates = 0
    async with open_runtime(get_settings()) as rt:
        envelopes = encounter_events(model, rt.pseudonym_key, rt.keyring)
        for i in range(0, len(envelopes), batch):
            result = await rt.log.append(envelopes[i : i + batch])
            appended += len(result.appended)
            duplicates += len(result.duplicates)
            if result.appended:
                await asyncio.sleep(pace_s)
    return {"events": len(envelopes), "appended": appended, "duplicates": duplicates}


def main(
    seed: int = typer.Option(7, "--seed"),
    days: int = typer.Option(2, "--days"),
    start: str = typer.Option("2024-03-01", "--start"),
    calls_per_day: int = typer.Option(40, "--calls-per-day"),
    batch: int = typer.Option(10, "--batch", min=1),
    pace_s: float = typer.Option(0.2, "--pace-s", min=0),
) -> None:
    """Append the county's app events (exit 0 when every one is in the log)."""
    emit_json(asyncio.run(_append(county(seed, days, start, calls_per_day), batch, pace_s)), compact=True)


if __name__ == "__main__":
    typer.run(main)
