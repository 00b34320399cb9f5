"""A loopback TCP proxy that cuts a connection exactly where a fault test wants it.

:class:`CutProxy` forwards every connection to a target server (PostgreSQL, an EHR) byte for
byte. ``arm(marker)`` makes it cut the next connection whose client sends ``marker`` (for
PostgreSQL: a piece of SQL text, which travels in the Parse message of the extended
protocol): the bytes carrying it are NOT forwarded and both sockets are aborted, so the
server sees the client vanish in the middle of its transaction (it rolls back) and the client
sees its connection reset — what a crashed PostgreSQL connection does, at a chosen statement.
``down()`` resets every connection and refuses new ones until ``up()``: the server as seen
by a client while it restarts (the server itself, shared by other tests, is never touched).

Invariants: a marker split across two reads is still found (each direction keeps the tail of
the last read); a cut happens at most ``times`` times per ``arm``, and never after
:meth:`CutProxy.disarm` (a fault that gave up waiting for its statement must not fire later,
when nothing expects it); unarmed, the proxy is a transparent pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class _Armed:
    marker: bytes
    times: int
    cut: asyncio.Event = field(default_factory=asyncio.Event)


class CutProxy:
    """``await start()`` listens on ``127.0.0.1:<port>`` (``port`` after start) and forwards to
    ``target``; ``await stop()`` closes the listener and every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self._armed: list[_Armed] = []
        self._down = False
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        if self._tasks:  # the pumps end on the aborted sockets; cancel only stragglers
            _, stragglers = await asyncio.wait(list(self._tasks), timeout=2.0)
            for t in stragglers:
                t.cancel()
            for t in stragglers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def down(self) -> None:
        """Reset every open connection and refuse new ones (until :meth:`up`)."""
        self._down = True
        for w in list(self._writers):
            w.transport.abort()

    def up(self) -> None:
        self._down = False

    def arm(self, marker: bytes, *, times: int = 1) -> asyncio.Event:
        """Cut the next ``times`` connection(s) whose client sends ``marker``; the returned
        event is set at the first cut."""
        if not marker:
            raise ValueError("an empty marker would cut every connection")
        armed = _Armed(marker, times)
        self._armed.append(armed)
        return armed.cut

    def disarm(self, cut: asyncio.Event) -> None:
        """Withdraw the ``arm`` that returned ``cut`` (its remaining cuts never happen)."""
        self._armed = [a for a in self._armed if a.cut is not cut]

    def _match(self, window: bytes) -> bool:
        for armed in self._armed:
            if armed.times > 0 and armed.marker in window:
                armed.times -= 1
                armed.cut.set()
                self.cuts += 1
                if armed.times == 0:
                    self._armed.remove(armed)
                return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            both = (writer, up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, both, watch=True),
                self._pump(up_reader, writer, both, watch=False),
            )
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            if up_writer is not None:
                self._writers.discard(up_writer)
            self._tasks.discard(task)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        both: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        watch: bool,
    ) -> None:
        tail = b""
        keep = max((len(a.marker) for a in self._armed), default=64)
        try:
            while data := await src.read(65536):
                if watch and self._armed and self._match(tail + data):
                    for w in both:
                        w.transport.abort()
                    return
                if watch:
                    keep = max([keep, *(len(a.marker) for a in self._armed)])
                    tail = (tail + data)[-keep:]
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
