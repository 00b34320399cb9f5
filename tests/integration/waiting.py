"""Awaiting a condition in integration tests (polling, never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(
    cond: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Poll ``await cond()`` every ``interval`` seconds until it is truthy and return its value;
    fail the test after ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await cond()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
