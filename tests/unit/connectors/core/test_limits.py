"""The receivers' per-source limits (pure token buckets and counters)."""

from __future__ import annotations

import pytest

from connectors.core.limits import ByteBudget, ConcurrencyLimiter, RateLimiter, SourceLimits


def test_a_rate_limiter_allows_a_burst_then_the_rate_per_source() -> None:
    rate = RateLimiter(rate=2.0, burst=3)
    assert [rate.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rate.take("a", 0.0) == pytest.approx(0.5)  # the next token in half a second
    assert rate.take("b", 0.0) == 0.0  # another source has its own bucket
    assert rate.take("a", 0.5) == 0.0 and rate.take("a", 0.5) > 0


def test_a_rate_limiter_keeps_a_bounded_number_of_sources() -> None:
    rate = RateLimiter(rate=1.0, burst=1, max_sources=3)
    for i in range(10):
        rate.take(f"s{i}", 0.0)
    assert len(rate._buckets) == 3


def test_a_byte_budget_refuses_beyond_its_burst_and_refills_per_hour() -> None:
    budget = ByteBudget(per_hour=3600, burst=100)
    assert budget.spend("a", 60, 0.0) and not budget.spend("a", 60, 0.0)
    assert budget.spend("a", 60, 20.0)  # 1 byte a second refilled
    assert not budget.spend("a", 101, 10_000.0)  # larger than the burst: never
    assert budget.spend("a", 0, 0.0)
    assert not ByteBudget(per_hour=0, burst=0).spend("a", 1, 0.0)


def test_concurrency_is_counted_per_source_and_released() -> None:
    limiter = ConcurrencyLimiter(2)
    assert limiter.acquire("a") and limiter.acquire("a") and not limiter.acquire("a")
    assert limiter.acquire("b")
    limiter.release("a")
    assert limiter.acquire("a")
    for _ in range(3):
        limiter.release("a")
    assert limiter._open == {"b": 1}


def test_source_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        SourceLimits(rate_per_second=0)
    with pytest.raises(ValueError):
        SourceLimits.model_validate({"burst": 5, "typo": 1})
