"""Composition of the API process: pool, read models, access log, token verifier, uvicorn.

Used by ``hub api serve`` and by ``hub demo`` (which runs it in the background) and by the
end-to-end tests (which run it in a thread on a free port).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from hub.bootstrap import open_reader
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.net import is_loopback
from hub.kernel.settings import Settings

log = logging.getLogger(__name__)


def dev_issuer_for(settings: Settings) -> DevIssuer | None:
    """The development token issuer (its JWKS, discovery and ``/dashboard/dev-token``
    routes) only with ``environment=development`` and no external ``api.jwks_url``;
    anywhere else the API trusts the configured identity provider alone."""
    return DevIssuer.open(settings) if settings.is_development and not settings.api.jwks_url else None


def routed_dev_issuer(issuer: DevIssuer | None, host: str) -> DevIssuer | None:
    """The development issuer whose routes (``/dashboard/dev-token``, its JWKS and
    discovery) the API may serve when bound to ``host``: only on a loopback address.
    ``/dashboard/dev-token`` hands an analyst token to anyone who can reach it, so on any
    other address the routes are left out (tokens minted with ``hub api token`` still
    verify: minting them needs the key file, not the network)."""
    if issuer is None or is_loopback(host):
        return issuer
    log.warning(
        "development issuer routes disabled: the API binds to non-loopback host %s, where"
        " /dashboard/dev-token would hand an analyst token to anyone on the network"
        " (bind to 127.0.0.1, or mint tokens with `hub api token`)",
        host,
    )
    return None


@asynccontextmanager
async def open_app(settings: Settings, host: str | None = None) -> AsyncIterator[FastAPI]:
    """The API wired to PostgreSQL, to be bound to ``host`` (default ``settings.api.host``;
    it decides whether the development issuer's routes are served); the pool (runtime role)
    and the audit topic's producer close on exit."""
    async with open_reader(settings, max_size=min(settings.postgres.pool_max, 5)) as reader:
        dev_issuer = dev_issuer_for(settings)
        verifier = TokenVerifier(settings, jwks=dev_issuer.jwks()) if dev_issuer else TokenVerifier(settings)
        app = create_app(
            settings,
            PostgresReadModels(settings, reader.pool),
            reader.access_log(settings),
            verifier,
            dev_issuer=routed_dev_issuer(dev_issuer, host or settings.api.host),
        )
        yield app


async def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, log_level: str = "info"
) -> None:
    bind = host or settings.api.host
    async with open_app(settings, bind) as app:
        config = uvicorn.Config(
            app,
            host=bind,
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
            async with open_app(self.settings, self.host) as app:
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
