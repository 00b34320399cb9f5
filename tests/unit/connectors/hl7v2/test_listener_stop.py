"""MLLP listener shutdown: ``stop()`` with client connections still open closes them
cleanly — no "Exception in callback ... CancelledError" from asyncio (Python 3.11's
``start_server`` reports a cancelled client handler that way), an in-flight frame still
gets its ACK, and a handler stuck past the grace period is ended quietly."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.hl7v2.listener import MllpListener
from connectors.hl7v2.mllp import FrameDecoder, frame

pytestmark = pytest.mark.asyncio(loop_scope="function")


def _deps() -> Any:
    # stop() and connection handling need no services; handle() is replaced per test
    return types.SimpleNamespace(pool=None, core_schema="unused")


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything reported to the event loop's exception handler during the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    yield errors
    loop.set_exception_handler(previous)


async def _listener(handle: Any = None) -> MllpListener:
    listener = MllpListener(_deps(), host="127.0.0.1", port=0)
    if handle is not None:
        listener.handle = handle  # type: ignore[method-assign]
    await listener.serve()
    return listener


async def _settle() -> None:
    for _ in range(3):  # let done-callbacks of finished handler tasks run
        await asyncio.sleep(0)


async def test_stop_with_idle_client_closes_it_without_traceback(loop_errors: list[dict[str, Any]]) -> None:
    listener = await _listener()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    await asyncio.wait_for(_until(lambda: len(listener._conns) == 1), 2)
    await asyncio.wait_for(listener.stop(), 2)
    await _settle()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # the client sees the close
    assert loop_errors == []
    assert not listener._conns
    writer.close()
    await listener.stop()  # idempotent


async def test_in_flight_frame_gets_its_ack_before_the_connection_closes(
    loop_errors: list[dict[str, Any]],
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_handle(payload: bytes, ref: str) -> bytes:
        started.set()
        await release.wait()
        return b"ACK " + payload

    listener = await _listener(slow_handle)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(frame(b"MSG1"))
    await writer.drain()
    await asyncio.wait_for(started.wait(), 2)
    stopping = asyncio.create_task(listener.stop(grace=5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the busy handler
    release.set()
    await asyncio.wait_for(stopping, 2)
    await _settle()
    data = await asyncio.wait_for(reader.read(), 2)  # the ACK, then end of stream
    assert FrameDecoder().feed(data) == [b"ACK MSG1"]
    assert loop_errors == []
    writer.close()


async def test_handler_stuck_past_grace_is_ended_quietly(loop_errors: list[dict[str, Any]]) -> None:
    started = asyncio.Event()

    async def stuck_handle(payload: bytes, ref: str) -> bytes:
        started.set()
        await asyncio.Event().wait()  # never answers
        return b""

    listener = await _listener(stuck_handle)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(frame(b"MSG"))
    await writer.drain()
    await asyncio.wait_for(started.wait(), 2)
    await asyncio.wait_for(listener.stop(grace=0.1), 2)
    await _settle()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # no ACK: the EHR will resend
    assert loop_errors == []
    assert not listener._conns
    writer.close()


async def _until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.01)
