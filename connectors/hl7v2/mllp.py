"""MLLP (Minimal Lower Layer Protocol): framing and an async client.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. :class:`FrameDecoder` is pure (bytes in,
frames out) and bounded (a frame larger than ``max_frame`` is an error, not a memory leak);
bytes outside a frame are reported as junk so a listener can account for them.

:class:`MllpClient` keeps one connection, sends one message at a time and waits for the
one answer frame with a read timeout. Any failure closes the connection (a late answer on a
reused connection could otherwise be read as the answer to the next message); the next
:meth:`MllpClient.exchange` reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from hub.kernel.errors import PermanentError, TransientError

START = b"\x0b"
END = b"\x1c\x0d"
DEFAULT_MAX_FRAME = 1 << 20


def frame(message: bytes) -> bytes:
    if START in message or b"\x1c" in message:
        raise ValueError("an MLLP payload must not contain 0x0B or 0x1C")
    return START + message + END


class FrameTooLarge(PermanentError, ValueError):
    """A frame longer than the configured maximum (refused, never buffered further)."""


@dataclass
class FrameDecoder:
    """Incremental decoder. ``feed`` returns complete frames; ``junk`` collects bytes seen
    outside any frame (since the last :meth:`take_junk`)."""

    max_frame: int = DEFAULT_MAX_FRAME
    _buf: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    junk: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        self._buf.extend(data)
        while True:
            if not self._in_frame:
                i = self._buf.find(START)
                if i < 0:
                    self.junk.extend(self._buf)
                    self._buf.clear()
                    break
                self.junk.extend(self._buf[:i])
                del self._buf[: i + 1]
                self._in_frame = True
            j = self._buf.find(END)
            if j < 0:
                if len(self._buf) > self.max_frame:
                    self._buf.clear()
                    self._in_frame = False
                    raise FrameTooLarge(f"MLLP frame exceeds {self.max_frame} bytes")
                break
            body = bytes(self._buf[:j])
            del self._buf[: j + 2]
            self._in_frame = False
            restart = body.rfind(START)
            if restart >= 0:  # a frame restarted before the previous one ended
                self.junk.extend(b"\x0b" + body[:restart])
                body = body[restart + 1 :]
            frames.append(body)
        return frames

    def take_junk(self) -> bytes:
        out = bytes(self.junk).strip(b"\r\n\x00 ")
        self.junk.clear()
        return out


class MllpError(TransientError, ConnectionError):
    """The exchange failed before an answer frame arrived (connection, timeout, framing)."""


class MllpTimeout(MllpError):
    """No connection or no answer within the configured timeout."""


class MllpConnectError(MllpError):
    """The connection could not be opened (refused, unreachable, timed out): nothing was
    sent. Any other :class:`MllpError` of :meth:`MllpClient.exchange` came after the message
    may have left, so whether the receiver took it is unknown."""


class MllpClient:
    """One persistent MLLP connection to ``host:port`` (TLS when ``ssl_context`` is given)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.ssl_context = ssl_context
        self.max_frame = max_frame
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.connects = 0

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl_context), self.connect_timeout
            )
        except TimeoutError as exc:
            raise MllpConnectError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise MllpConnectError(
                f"connect to {self.host}:{self.port} failed: {exc.strerror or exc}"
            ) from exc
        self.connects += 1

    async def exchange(self, message: bytes) -> bytes:
        """Send one message and return the payload of the one answer frame."""
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                await self._connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(frame(message))
                await self._writer.drain()
                return await asyncio.wait_for(self._read_frame(self._reader), self.read_timeout)
            except TimeoutError as exc:
                await self._close()
                raise MllpTimeout(f"no answer from {self.host}:{self.port} in {self.read_timeout}s") from exc
            except (OSError, asyncio.IncompleteReadError, FrameTooLarge) as exc:
                await self._close()
                raise MllpError(
                    f"exchange with {self.host}:{self.port} failed: {type(exc).__name__}"
                ) from exc
            except BaseException:
                await self._close()
                raise

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        decoder = FrameDecoder(self.max_frame)
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", None)
            frames = decoder.feed(chunk)
            if frames:
                return frames[0]

    async def _close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self) -> None:
        async with self._lock:
            await self._close()
