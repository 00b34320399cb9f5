"""Composition of the API process: the runtime (pool, event log, keyring), read models,
access log, token verifier, the encounter intake, uvicorn.

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

from connectors.intake.service import IntakeService
from hub.bootstrap import open_runtime
from hub.entry.api.app import create_app
from hub.entry.api.auth import DevIssuer, TokenVerifier
from hub.entry.api.readmodels import PostgresReadModels
from hub.kernel.audit import AccessLog
from hub.kernel.custom_fields import load_definitions
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
    """The API wired to the hub, to be bound to ``host`` (default ``settings.api.host``;
    it decides whether the development issuer's routes are served). It opens a whole
    runtime (:func:`hub.bootstrap.open_runtime`): the encounter intake appends to the event
    log and seals with the keyring; everything closes on exit."""
    async with open_runtime(settings) as rt:
        dev_issuer = dev_issuer_for(settings)
        verifier = TokenVerifier(settings, jwks=dev_issuer.jwks()) if dev_issuer else TokenVerifier(settings)
        read_models = PostgresReadModels(settings, rt.pool, keys=rt.keyring)
        intake = IntakeService(
            log=rt.log,
            keystore=rt.keyring,
            pseudonym_key=rt.pseudonym_key,
            pool=rt.pool,
            core_schema=rt.namespace.core_schema,
            options=settings.intake,
            incident_known=read_models.incident_known,
            consents_of=read_models.consents_of,
            custom=load_definitions(settings.custom.definitions),
        )
        app = create_app(
            settings,
            read_models,
            AccessLog(rt.pool, settings.core_schema, rt.audit),
            verifier,
            dev_issuer=routed_dev_issuer(dev_issuer, host or settings.api.host),
            intake_service=intake,
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
