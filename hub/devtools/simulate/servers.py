"""HTTP servers presenting the county model (127.0.0.1 only): an SF-style SoQL CAD feed
and a case-management REST API. Controls for tests: ``outage`` (answer 503),
``delay`` (seconds before each answer), ``requests`` (what was asked)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.core.http import serve

__all__ = ["FeedState", "cad_feed_app", "cases_app", "serve", "soql_query"]

_WHERE = re.compile(r"^\s*(\w+)\s*(>=|>)\s*'([^']*)'\s*$")


def soql_query(rows: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    """The subset of SoQL a poller uses: ``$where f >(=) 'v'``, ``$order a,b``,
    ``$limit``, ``$offset`` (string comparison, as for ISO timestamps)."""
    selected = rows
    where = params.get("$where")
    if where:
        m = _WHERE.match(where)
        if not m:
            raise ValueError("unsupported $where")
        col, op, value = m.groups()
        selected = [r for r in selected if col in r and (r[col] >= value if op == ">=" else r[col] > value)]
    order = [c.strip().split()[0] for c in params.get("$order", "").split(",") if c.strip()]
    if order:
        selected = sorted(selected, key=lambda r: tuple(str(r.get(c, "")) for c in order))
    offset = int(params.get("$offset", 0))
    limit = int(params.get("$limit", 1000))
    return selected[offset : offset + limit]


@dataclass
class FeedState:
    """What a simulated server serves, mutable by the test that owns it."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → latest row
    outage: bool = False
    delay: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)

    def publish(self, key: str, row: dict[str, Any]) -> None:
        self.rows[key] = row


Answer = Callable[[dict[str, str]], web.Response]


def _feed_app(state: FeedState, path: str, answer: Answer) -> web.Application:
    """``GET path``: the request's query is recorded in ``state.requests``, delayed by
    ``state.delay``, refused with 503 during ``state.outage``, else ``answer(query)``."""

    async def handle(request: web.Request) -> web.Response:
        params = dict(request.query)
        state.requests.append(params)
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.outage:
            return web.json_response({"error": "service unavailable"}, status=503)
        return answer(params)

    app = web.Application()
    app.router.add_get(path, handle)
    return app


def cad_feed_app(state: FeedState, path: str = "/resource/calls.json") -> web.Application:
    """``GET path?$where=…&$order=…&$limit=…&$offset=…`` → the matching rows (see
    :func:`soql_query`); an unsupported query answers 400."""

    def answer(params: dict[str, str]) -> web.Response:
        try:
            rows = soql_query(list(state.rows.values()), params)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(rows)

    return _feed_app(state, path, answer)


def cases_app(state: FeedState, path: str = "/api/v1/case-records") -> web.Application:
    """``GET path?updated_since=T&offset=K&limit=N`` → ``{"records": [...]}`` ordered by
    (updated_at, record_id), records with ``updated_at >= T``."""

    def answer(params: dict[str, str]) -> web.Response:
        since = params.get("updated_since", "")
        rows = sorted(
            (r for r in state.rows.values() if str(r.get("updated_at", "")) >= since),
            key=lambda r: (str(r["updated_at"]), str(r["record_id"])),
        )
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 500))
        return web.json_response({"records": rows[offset : offset + limit]})

    return _feed_app(state, path, answer)
