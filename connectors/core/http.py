"""Serving an aiohttp application (the receivers: EIDO push, case webhooks): TLS, the
per-source limits, bounded body reading, and the shared answer to an outage.

What an HTTP receiver costs before a request is authenticated is bounded:

- :func:`limits_middleware` refuses a source over its request rate or with too many
  requests in progress (429 with ``Retry-After``) before anything of the request is read;
- :func:`read_body` refuses a declared ``Content-Length`` over the limit (413) before
  reading, streams the body in chunks (feeding the signature's HMAC as it goes), stops at
  the limit for a chunked body (413) or at the time limit for a slow one (408), and keeps at
  most :data:`SPOOL_BYTES` of it in memory (the rest is spooled to a temporary file) until
  the signature has been checked — unauthenticated bytes never occupy megabytes of memory.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from connectors.core.limits import SourceLimits
from hub.kernel.deadletters import describe_failure
from hub.kernel.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

#: seconds a sender is asked to wait before retrying a request refused for an outage
RETRY_AFTER_S = 5
#: bytes of one request body kept in memory before it is spooled to a temporary file
SPOOL_BYTES = 64 * 1024
CHUNK = 64 * 1024
#: seconds a refused request's unread body is still drained (and discarded) so the sender
#: can read the refusal before the connection closes (aiohttp's default is 10)
LINGER_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(PermanentError, ValueError):
    """A request refused at the boundary: ``status`` (4xx) and a message for the sender
    that names the problem, never the request's content."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.message}, status=self.status, headers=self.headers)


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


async def read_body(
    request: web.Request,
    *,
    max_body: int,
    timeout: float,
    mac: hmac.HMAC | None = None,
    signature: bytes | None = None,
) -> bytes:
    """The request body, read within the bounds of the module docstring. With ``mac``
    (an HMAC already fed with the signed prefix) and ``signature`` (the expected
    ``sha256=<hex>`` value), the body is authenticated before it is returned: a mismatch
    is :class:`Refused` 401 and the body is never held in memory."""
    declared = request.content_length
    if declared is not None and declared > max_body:
        raise Refused(413, f"request body exceeds {max_body} bytes")
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            async with asyncio.timeout(timeout):
                async for chunk in request.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_body:
                        raise Refused(413, f"request body exceeds {max_body} bytes")
                    if mac is not None:
                        mac.update(chunk)
                    spool.write(chunk)
        except TimeoutError:
            raise Refused(408, f"request body not received within {timeout:g}s") from None
        if mac is not None:
            expected = ("sha256=" + mac.hexdigest()).encode()
            if signature is None or not hmac.compare_digest(expected, signature):
                raise Refused(401, "bad signature")
        spool.seek(0)
        return spool.read()


def limits_middleware(limits: SourceLimits, clock: Callable[[], float] = time.monotonic) -> Middleware:
    """Per-source request rate and concurrency (a source = the peer address): over
    either, 429 with ``Retry-After`` before the request is read."""
    rate = limits.rate_limiter()
    concurrency = limits.concurrency()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        source = request.remote or "unknown"
        wait = rate.take(source, clock())
        if wait:
            return Refused(
                429, "rate limit exceeded; retry later", {"Retry-After": str(max(1, math.ceil(wait)))}
            ).response()
        if not concurrency.acquire(source):
            return Refused(
                429, "too many requests in progress from this source; retry later", {"Retry-After": "1"}
            ).response()
        try:
            return await handler(request)
        finally:
            concurrency.release(source)

    return middleware


async def serve(
    app: web.Application,
    port: int = 0,
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (port 0: any free port; TLS with ``ssl_context``);
    returns the runner (``await runner.cleanup()`` to stop) and the bound port. A request
    refused before its body was read keeps its connection at most :data:`LINGER_S` longer."""
    runner = web.AppRunner(app, access_log=None, lingering_time=LINGER_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner, bound_port(site)


def bound_port(site: web.TCPSite) -> int:
    """The port a started site listens on (aiohttp keeps its asyncio server private)."""
    server = site._server
    if not isinstance(server, asyncio.Server) or not server.sockets:
        raise RuntimeError(f"{site.name}: not listening")
    return int(server.sockets[0].getsockname()[1])
