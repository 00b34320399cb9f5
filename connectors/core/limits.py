"""Per-source limits of the inbound receivers (pure: no I/O, the clock is passed in).

A *source* is the peer's address as the receiver sees it (the EHR's interface engine, a
CAD, a case system, or the proxy in front of them). What one source may cost the hub:

- :class:`RateLimiter`: a token bucket per source (``rate`` per second, ``burst`` at
  once); a request or frame beyond it is refused with "retry later", not queued;
- :class:`ConcurrencyLimiter`: at most ``limit`` requests (HTTP) or connections (MLLP) of
  one source at a time;
- :class:`ByteBudget`: a token bucket of *bytes* per source — how much raw input a source
  may turn into stored dead letters per hour; beyond it the dead letter keeps its reason
  but not the raw bytes, so junk cannot grow permanent storage without bound.

Invariant: the tables are bounded — a limiter keeps at most ``max_sources`` sources and
drops the least recently seen beyond that (a dropped source starts again with a full
bucket, which costs at most one burst).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

#: how many sources' buckets a limiter keeps (beyond it the least recently seen is dropped)
MAX_SOURCES = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per source: ``rate`` tokens per second, at most ``burst`` stored."""

    rate: float
    burst: float
    max_sources: int = MAX_SOURCES
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("rate and burst must be positive")

    def _bucket(self, source: str, now: float) -> _Bucket:
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        self._buckets[source] = bucket
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return bucket

    def take(self, source: str, now: float, cost: float = 1.0) -> float:
        """0 when ``source`` may spend ``cost`` now (it is spent), else the seconds to wait
        before it could (nothing is spent)."""
        bucket = self._bucket(source, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (min(cost, self.burst) - bucket.tokens) / self.rate


@dataclass
class ByteBudget:
    """How many raw bytes each source may still have stored: ``per_hour`` bytes an hour,
    ``burst`` at most at once (a token bucket of bytes)."""

    per_hour: int
    burst: int
    _limiter: RateLimiter | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.per_hour > 0 and self.burst > 0:
            self._limiter = RateLimiter(self.per_hour / 3600.0, float(self.burst))

    def spend(self, source: str, size: int, now: float) -> bool:
        """Whether ``size`` bytes of ``source`` may be stored now (and they are counted);
        a budget of 0 bytes stores nothing."""
        if size <= 0:
            return True
        if self._limiter is None or size > self.burst:
            return False
        return self._limiter.take(source, now, float(size)) == 0.0


@dataclass
class ConcurrencyLimiter:
    """At most ``limit`` things (requests, connections) open per source at once."""

    limit: int
    _open: dict[str, int] = field(default_factory=dict)

    def acquire(self, source: str) -> bool:
        """Open one for ``source`` if it is under its limit (then :meth:`release` it)."""
        n = self._open.get(source, 0)
        if n >= self.limit:
            return False
        self._open[source] = n + 1
        return True

    def release(self, source: str) -> None:
        n = self._open.get(source, 0) - 1
        if n > 0:
            self._open[source] = n
        else:
            self._open.pop(source, None)


class SourceLimits(BaseModel):
    """The per-source limits of one receiver (every HTTP receiver and the MLLP listener
    has a ``limits:`` block of this shape; the defaults suit one interface engine or CAD
    per source address)."""

    model_config = ConfigDict(extra="forbid")

    rate_per_second: float = Field(20.0, gt=0, description="requests (HTTP) or frames (MLLP) per second")
    burst: int = Field(100, gt=0, description="requests or frames a source may send at once")
    max_concurrent: int = Field(
        8, gt=0, description="requests in progress (HTTP) or open connections (MLLP) per source"
    )
    body_timeout_seconds: float = Field(30.0, gt=0, description="time to send one request body or frame")
    dead_letter_bytes_per_hour: int = Field(
        8 * 1024 * 1024, ge=0, description="raw bytes of refused input a source may have kept as dead letters"
    )
    dead_letter_burst_bytes: int = Field(2 * 1024 * 1024, ge=0)

    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(self.rate_per_second, float(self.burst))

    def concurrency(self) -> ConcurrencyLimiter:
        return ConcurrencyLimiter(self.max_concurrent)

    def byte_budget(self) -> ByteBudget:
        return ByteBudget(self.dead_letter_bytes_per_hour, self.dead_letter_burst_bytes)
