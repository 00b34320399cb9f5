"""The worker processes' HTTP endpoint on ``settings.metrics_port`` (issue 13 item 6): the
Prometheus exposition and the liveness / readiness probes of the deployment manifests.

- ``GET /metrics``: every metric of :mod:`hub.kernel.metrics` this process holds;
- ``GET /livez``: 200 while every liveness check passes, else 503 naming the failing one
  (``hub project``: projection progress — a batch applied or caught up — within
  ``probe_stale_s``; a projector stuck after a failed batch stops answering 200, and its
  supervisor restarts it);
- ``GET /readyz``: 200 once the process has started its components, 503 before and while
  stopping.

The server runs on the process's event loop, so a blocked loop answers no probe at all (a
probe timeout, which a supervisor treats as a failure). :func:`route` is the pure part.
Port 0 disables the endpoint; a port already in use is logged and the worker runs on
without it (two workers on one development machine), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.kernel import metrics

log = logging.getLogger(__name__)

#: a liveness check: None while alive, else why not
Check = Callable[[], str | None]


@dataclass
class Probes:
    """What the endpoint answers: ``ready`` (set by the command once started) and the
    liveness checks."""

    ready: bool = False
    checks: list[Check] = field(default_factory=list)

    def not_alive(self) -> str | None:
        return next((why for check in self.checks if (why := check()) is not None), None)


def progress_check(stale_s: float, now: Callable[[], float] = time.time) -> Check:
    """Liveness of a projector: its progress gauge (``hub_projection_progress_timestamp_seconds``)
    moved within ``stale_s`` seconds; the time the check was made counts as progress (a
    projector that is starting up is alive)."""
    since = now()

    def check() -> str | None:
        last = max(metrics.PROJECTION_PROGRESS._value.get(), since)
        idle = now() - last
        return f"no projection progress for {idle:.0f}s (limit {stale_s:g}s)" if idle > stale_s else None

    return check


def route(method: str, path: str, probes: Probes) -> tuple[int, str, bytes]:
    """(status, content type, body) for one request (pure but for reading the metrics)."""
    if method != "GET":
        return 405, "text/plain", b"method not allowed\n"
    path = path.split("?", 1)[0]
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest()
    if path == "/livez":
        why = probes.not_alive()
        return (503, "text/plain", f"not alive: {why}\n".encode()) if why else (200, "text/plain", b"alive\n")
    if path == "/readyz":
        return (200, "text/plain", b"ready\n") if probes.ready else (503, "text/plain", b"not ready\n")
    return 404, "text/plain", b"not found\n"


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, probes: Probes) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        method, path, *_ = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""]
        status, ctype, body = route(method, path, probes)
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve_probes(host: str, port: int, probes: Probes) -> AsyncIterator[int | None]:
    """Serve ``/metrics``, ``/livez`` and ``/readyz`` on ``host:port`` while the block runs;
    yields the bound port (None when disabled or the port is taken)."""
    if port == 0:
        yield None
        return
    try:
        server = await asyncio.start_server(lambda r, w: _handle(r, w, probes), host, port)
    except OSError as exc:
        log.warning("metrics and probes not served: %s:%d unavailable (%s)", host, port, exc.strerror or exc)
        yield None
        return
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
