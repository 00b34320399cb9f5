"""Serving an aiohttp application (the receivers: EIDO push, case webhooks)."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, port: int = 0, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (port 0: any free port); returns the runner (``await
    runner.cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    if server is None or not server.sockets:  # type: ignore[attr-defined]
        raise RuntimeError(f"could not bind {host}:{port}")
    return runner, int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
