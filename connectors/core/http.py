"""Serving an aiohttp application (the receivers: EIDO push, case webhooks)."""

from __future__ import annotations

import asyncio

from aiohttp import web


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
