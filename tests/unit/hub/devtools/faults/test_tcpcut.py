"""The fault suite's cutting proxy: a cut fires on its marker, at most ``times`` times, and
never once withdrawn — a long fault run (seed 13) failed because a cut whose fault had given
up waiting for its statement stayed armed and cut the app's append a minute later, when no
fault was scheduled, so the app's job re-ran past the quiescence deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hub.devtools.faults.tcpcut import CutProxy


@pytest.fixture
async def proxy() -> AsyncIterator[CutProxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    p = CutProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    await p.start()
    yield p
    await p.stop()
    server.close()
    await server.wait_closed()


async def roundtrip(proxy: CutProxy, payload: bytes) -> bytes:
    """What comes back through the proxy for ``payload`` (b"" when the connection was cut)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_an_armed_cut_fires_once_on_its_marker(proxy: CutProxy) -> None:
    cut = proxy.arm(b"COPY")
    assert await roundtrip(proxy, b"SELECT 1") == b"SELECT 1"
    assert not cut.is_set()
    assert await roundtrip(proxy, b"COPY rows") == b""
    assert cut.is_set() and proxy.cuts == 1
    assert await roundtrip(proxy, b"COPY rows") == b"COPY rows"  # times=1: spent


async def test_a_disarmed_cut_never_fires(proxy: CutProxy) -> None:
    cut = proxy.arm(b"COPY")
    proxy.disarm(cut)
    assert await roundtrip(proxy, b"COPY rows") == b"COPY rows"
    assert not cut.is_set() and proxy.cuts == 0


async def test_disarming_one_cut_keeps_the_others(proxy: CutProxy) -> None:
    first = proxy.arm(b"COPY")
    proxy.arm(b"UPDATE")
    proxy.disarm(first)
    assert await roundtrip(proxy, b"COPY rows") == b"COPY rows"
    assert await roundtrip(proxy, b"UPDATE x") == b""
