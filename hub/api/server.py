"""Composition of the API process: pool, read models, access log, token verifier, uvicorn.

Used by ``hub api serve`` and by ``hub demo`` (which runs it in the background) and by the
end-to-end tests (which run it in a thread on a free port).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from hub.api.access_log import AccessLog
from hub.api.app import create_app
from hub.api.auth import DevIssuer, TokenVerifier
from hub.api.readmodels import PostgresReadModels
from hub.db import open_pool
from hub.settings import Settings


def dev_issuer_for(settings: Settings) -> DevIssuer | None:
    """The development token issuer (its JWKS, discovery and ``/dashboard/dev-token``
    routes) only with ``environment=development`` and no external ``api.jwks_url``;
    anywhere else the API trusts the configured identity provider alone."""
    return DevIssuer.open(settings) if settings.is_development and not settings.api.jwks_url else None


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The API wired to PostgreSQL; the pool closes on exit."""
    async with open_pool(settings, max_size=min(settings.postgres.pool_max, 5)) as pool:
        dev_issuer = dev_issuer_for(settings)
        verifier = TokenVerifier(settings, jwks=dev_issuer.jwks()) if dev_issuer else TokenVerifier(settings)
        app = create_app(
            settings,
            PostgresReadModels(settings, pool),
            AccessLog(pool, settings.core_schema),
            verifier,
            dev_issuer=dev_issuer,
        )
        yield app


async def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, log_level: str = "info"
) -> None:
    async with open_app(settings) as app:
        config = uvicorn.Config(
            app,
            host=host or settings.api.host,
            port=port or settings.api.port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
        )
        await uvicorn.Server(config).serve()


class ThreadedServer:
    """The API on its own event loop in a daemon thread (tests and ``hub demo``'s
    foreground mode). ``start()`` returns once the server accepts connections."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.settings, self.host, self.port = settings, host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        async def main() -> None:
            async with open_app(self.settings) as app:
                config = uvicorn.Config(
                    app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="on"
                )
                self._server = uvicorn.Server(config)
                await self._server.serve()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self._run, name="hub-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self._server is not None and self._server.started):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the API did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start in time")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
