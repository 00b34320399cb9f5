"""Serving an aiohttp application (the receivers: EIDO push, case webhooks), and their
shared answer to an outage."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from hub.kernel.deadletters import describe_failure
from hub.kernel.errors import TransientError

log = logging.getLogger(__name__)

#: seconds a sender is asked to wait before retrying a request refused for an outage
RETRY_AFTER_S = 5


def unavailable_response(receiver: str, exc: TransientError) -> web.Response:
    """503 with ``Retry-After``: a dependency of the receiver (the log, the key store,
    PostgreSQL) is down, so nothing of the request was accepted; the sender retries the
    same request, which is then processed in full (deterministic event ids keep every fact
    once). The cause is logged, never sent to the sender."""
    log.warning("%s: refused a request for an outage (503): %s", receiver, describe_failure(exc))
    return web.json_response(
        {"error": "temporarily unavailable; retry later"},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def serve(app: web.Application, port: int = 0, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (port 0: any free port); returns the runner (``await
    runner.cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, bound_port(site)


def bound_port(site: web.TCPSite) -> int:
    """The port a started site listens on (aiohttp keeps its asyncio server private)."""
    server = site._server
    if not isinstance(server, asyncio.Server) or not server.sockets:
        raise RuntimeError(f"{site.name}: not listening")
    return int(server.sockets[0].getsockname()[1])
