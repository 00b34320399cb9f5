"""What one source may cost the MLLP listener: junk bytes and refused frames are bounded in
permanent storage (per connection and per source), connections and frames per source are
limited, answers without the patient id are refused, and the listener speaks TLS."""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.core.limits import SourceLimits
from connectors.core.memory import MemoryLog
from connectors.core.tls import TlsFiles, TlsServerConfig, server_context
from connectors.hl7v2.listener import JUNK_SAMPLE, MllpListener
from connectors.hl7v2.mllp import FrameDecoder, MllpClient, MllpError, frame
from connectors.hl7v2.rri import InboundRefused, build_rri_i12, read_rri
from hub.kernel.keystore import DeadLetterSealer
from tests.unit.connectors.core.tls_certs import make_certs

pytestmark = pytest.mark.asyncio(loop_scope="function")

MSG = "MSH|^~\\&|EHR|CLINIC|||20240301||RRI^I12|{cid}|P|2.5.1"


def _deps(log: MemoryLog) -> Any:
    return types.SimpleNamespace(
        pool=None, core_schema="unused", log=log, deadletter_sealer=DeadLetterSealer(bytes(32))
    )


async def _eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the listener closes the connection (a reset counts as closed)."""
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            out += chunk
    except ConnectionResetError:
        pass
    return out


async def _answers(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    decoder, frames = FrameDecoder(), []
    while len(frames) < n:
        frames += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
    return frames


async def test_junk_leaves_one_small_dead_letter_per_connection_and_closes_it() -> None:
    """1 MiB of junk on one connection: one dead letter of at most JUNK_SAMPLE raw bytes
    (was: one sealed dead letter per 64 KiB read, ~3.8x the junk in permanent storage)."""
    log = MemoryLog()
    listener = MllpListener(_deps(log), port=0)
    await listener.serve()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        junk = b"J" * (1 << 20)
        try:
            writer.write(junk)
            await writer.drain()
        except ConnectionError:
            pass  # closed by the listener while we were still writing
        assert await _eof(reader) == b""
        writer.close()
    finally:
        await listener.stop()
    stored = sum(len(dl.model_dump_json()) for dl in log.letters.values())
    assert len(log.letters) == 1
    (letter,) = log.letters.values()
    assert f"({JUNK_SAMPLE} of" in letter.reason
    assert stored < JUNK_SAMPLE * 2 < len(junk) / 100


async def test_a_source_over_its_dead_letter_budget_keeps_reasons_not_bytes() -> None:
    log = MemoryLog()
    limits = SourceLimits(dead_letter_bytes_per_hour=1, dead_letter_burst_bytes=1000)
    listener = MllpListener(_deps(log), port=0, limits=limits)
    await listener.serve()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        # ADT is refused (AR) and dead-lettered with its raw bytes
        adt = [f"MSH|^~\\&|EHR|CLINIC|||20240301||ADT^A01|a{i}|P|2.5.1\r" + "X" * 600 for i in range(4)]
        for message in adt:
            writer.write(frame(message.encode()))
        await writer.drain()
        answers = await _answers(reader, 4)
        writer.close()
    finally:
        await listener.stop()
    assert all(b"MSA|AR" in a for a in answers)
    kept = [dl for dl in log.letters.values() if "not kept" not in dl.reason]
    assert len(log.letters) == 4 and len(kept) == 1
    assert listener.counts["raw_dropped"] >= 3 * 600


async def test_connections_and_frames_per_source_are_limited() -> None:
    log = MemoryLog()
    limits = SourceLimits(max_concurrent=2, rate_per_second=0.01, burst=2)
    listener = MllpListener(_deps(log), port=0, limits=limits)

    async def handle(payload: bytes, ref: str) -> bytes:
        return b"MSH|^~\\&|ACK"

    listener.handle = handle  # type: ignore[method-assign]
    await listener.serve()
    try:
        conns = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(2)]
        for reader, writer in conns:  # both admitted: they get answers
            writer.write(frame(MSG.format(cid="c0").encode()))
            await writer.drain()
            await _answers(reader, 1)
        third_reader, third_writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await _eof(third_reader) == b"" and listener.counts["refused"] == 1
        third_writer.close()
        reader, writer = conns[0]
        writer.write(frame(MSG.format(cid="c9").encode()))  # the source's third frame: over the rate
        await writer.drain()
        (answer,) = await _answers(reader, 1)
        assert b"MSA|AE|c9" in answer and b"rate limit exceeded" in answer
        assert listener.counts["rate_limited"] == 1
        for _, w in conns:
            w.close()
    finally:
        await listener.stop()


async def test_the_listener_speaks_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    config = TlsServerConfig(tls=TlsFiles(certfile=certs.certfile, keyfile=certs.keyfile))
    ctx = server_context(config, name="m", development=False)
    listener = MllpListener(_deps(MemoryLog()), port=0, ssl_context=ctx)

    async def handle(payload: bytes, ref: str) -> bytes:
        return b"MSH|^~\\&|ACK|" + payload[-4:]

    listener.handle = handle  # type: ignore[method-assign]
    await listener.serve()
    try:
        client = MllpClient("127.0.0.1", listener.port, ssl_context=certs.client_context(), read_timeout=5)
        assert await client.exchange(MSG.format(cid="t1").encode()) == b"MSH|^~\\&|ACK|.5.1"
        await client.close()
        plain = MllpClient("127.0.0.1", listener.port, read_timeout=2)
        with pytest.raises(MllpError):
            await plain.exchange(MSG.format(cid="t2").encode())
        await plain.close()
    finally:
        await listener.stop()


def _rri(pid3: str | None) -> str:
    text = build_rri_i12(
        control_id="r1", ref_control_id="q1", referral_id="ref-1", person="psn_" + "a" * 32,
        status_code="A", now=datetime(2024, 3, 1, tzinfo=UTC),
    )
    segments = text.replace("\n", "\r").split("\r")
    out = []
    for seg in segments:
        if seg.startswith("PID|") and pid3 is not None:
            fields = seg.split("|")
            fields[3] = pid3
            seg = "|".join(fields)
        out.append(seg)
    return "\r".join(out)


@pytest.mark.parametrize(("pid3", "reason"), [("", "PID-3 patient identifier is missing"),
                                              ("MRN-12345", "PID-3 is not the pseudonym")])
async def test_an_answer_without_the_patient_id_is_refused_with_a_clear_ack_error(
    pid3: str, reason: str
) -> None:
    assert read_rri(_rri(None)).person == "psn_" + "a" * 32
    with pytest.raises(InboundRefused) as refused:
        read_rri(_rri(pid3))
    assert refused.value.code == "AE" and reason in refused.value.error.reason
    assert refused.value.error.location == "PID^1^3"
