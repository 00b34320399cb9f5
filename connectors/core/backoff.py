"""Exponential back-off with full jitter (pure: the random source is passed in).

``delay(n)`` for the n-th consecutive failure (n >= 1) is uniform in
``[0, min(cap, base * 2**(n-1))]`` but never below ``floor``, so a fleet of pollers that
failed together does not retry in lock-step and a long outage settles at ``cap``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0
    cap: float = 60.0
    floor: float = 0.05

    def ceiling(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        return min(self.cap, self.base * (2 ** min(failures - 1, 30)))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        if failures < 1:
            return 0.0
        top = self.ceiling(failures)
        r = (rng or random).random()
        return max(min(self.floor, top), r * top)
