"""The CAD ingest breakdown (bench.phases.Busy): overlapping calls count once, and the time
no call was in flight is what is left of the total."""

from __future__ import annotations

import asyncio

from bench.phases import Busy, breakdown


def test_overlapping_calls_count_their_union_and_the_rest_is_time_without_io() -> None:
    busy = Busy()
    release = {name: asyncio.Event() for name in ("a1", "a2", "dl")}

    async def wait(name: str) -> str:
        await release[name].wait()
        return name

    async def run() -> list[str]:
        calls = [
            asyncio.ensure_future(busy.timed("append", wait("a1"))),
            asyncio.ensure_future(busy.timed("append", wait("a2"))),
            asyncio.ensure_future(busy.timed("dead_letters", wait("dl"))),
        ]
        await asyncio.sleep(0)
        for name in ("a1", "dl", "a2"):  # the appends overlap each other and the dead letters
            release[name].set()
            await asyncio.sleep(0)
        return list(await asyncio.gather(*calls))

    assert asyncio.run(run()) == ["a1", "a2", "dl"]
    assert busy.calls == {"append": 2, "dead_letters": 1}
    assert max(busy.seconds["append"], busy.seconds["dead_letters"]) <= busy.seconds["any"]
    out = breakdown(busy.seconds["any"] + 5.0, busy)
    assert out["append"]["calls"] == 2 and out["revision_claims"] == {"seconds": 0.0, "calls": 0}
    assert abs(out["no_io_in_flight"]["seconds"] - 5.0) < 0.01
