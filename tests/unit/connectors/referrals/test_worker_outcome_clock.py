"""The delivery worker's outcome clock: wall clock by default, ``relative`` for replayed
(historical or simulated) referrals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from connectors.referrals.worker import RelativeClock, WallClock, WorkerConfig, outcome_clock

REQUESTED = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_wall_clock_ignores_the_referral_time() -> None:
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    clock = WallClock(now=lambda: fixed)
    assert clock.stamp(REQUESTED, clock.pick_up()) == fixed


def test_relative_clock_adds_the_real_elapsed_time_since_pick_up() -> None:
    mono = FakeMonotonic()
    clock = RelativeClock(monotonic=mono)
    picked = clock.pick_up()
    assert clock.stamp(REQUESTED, picked) == REQUESTED  # an outcome at once: the referral's time
    mono.t += 2.5  # retries and backoff took 2.5 s of real time
    assert clock.stamp(REQUESTED, picked) == REQUESTED + timedelta(seconds=2.5)
    mono.t -= 10  # a monotonic reading never makes an outcome precede its request
    assert clock.stamp(REQUESTED, picked) == REQUESTED


def test_config_selects_the_clock() -> None:
    assert WorkerConfig().clock == "wall"
    assert isinstance(outcome_clock(WorkerConfig().clock), WallClock)
    assert isinstance(outcome_clock(WorkerConfig.model_validate({"clock": "relative"}).clock), RelativeClock)
    with pytest.raises(ValidationError):
        WorkerConfig.model_validate({"clock": "simulated"})
