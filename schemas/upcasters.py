"""Upcasters: pure functions that turn an older version of an event's JSON into the next
one. Applied on read, in a chain, until the type is current; the log is never rewritten.

To retire a version: keep its upcaster forever (old records stay in the log forever).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# old type -> (next type, function from old data to next data)
UPCASTERS: dict[str, tuple[str, Upcaster]] = {}


def upcaster(old: str, new: str) -> Callable[[Upcaster], Upcaster]:
    def decorate(fn: Upcaster) -> Upcaster:
        UPCASTERS[old] = (new, fn)
        return fn

    return decorate


def upcast(event_type: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    seen = set()
    while event_type in UPCASTERS:
        if event_type in seen:
            raise ValueError(f"upcaster cycle at {event_type}")
        seen.add(event_type)
        event_type, fn = UPCASTERS[event_type]
        data = fn(dict(data))
    return event_type, data


@upcaster("cad.call.received.v1", "cad.call.received.v2")
def _call_received_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had flat ``precinct``/``sector``/``beat`` and naive local times with no zone;
    v2 groups the area and records the agency's zone (v1 feeds were all UTC)."""
    area = {k: data.pop(k, None) for k in ("precinct", "sector", "beat")}
    area["district"] = None
    data["area"] = area
    data.setdefault("source_timezone", "UTC")
    return data
