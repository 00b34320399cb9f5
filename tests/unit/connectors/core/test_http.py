"""The HTTP receivers' boundary (:mod:`connectors.core.http`): what a request costs before
it is authenticated, per-source limits, TLS, and 4xx (never 500) for malformed bodies —
exercised through the case webhook and the EIDO receiver as a sender sees them."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.cad.eido import EidoMapper
from connectors.cad.profile import load_profile
from connectors.cad.receiver import eido_app
from connectors.cases.mapping import CaseMapper
from connectors.cases.webhook import MAX_BODY, signed_headers, verify, webhook_app
from connectors.core.http import serve
from connectors.core.limits import SourceLimits
from connectors.core.memory import MemoryDeliveryStore, MemoryLog, MemoryRevisionStore
from connectors.core.runner import DeadLetterSink
from connectors.core.tls import TlsFiles, TlsServerConfig, server_context
from hub.kernel.crypto import MemoryKeyring
from hub.kernel.errors import ConfigError
from hub.kernel.keystore import DeadLetterSealer
from tests.unit.connectors.core.tls_certs import make_certs

WKEY = b"w" * 32
CASE = {
    "record_id": "r1",
    "record_type": "contact_logged",
    "case_id": "c1",
    "person": {"system": "mpi:county", "id": "MPI-1234567"},
    "occurred_at": "2024-03-02T10:00:00+00:00",
    "version": 1,
}


def hook(log: MemoryLog | None = None, **kw: Any) -> web.Application:
    mapper = CaseMapper("cases/test", b"p" * 32, MemoryKeyring(), default_agency="COUNTY")
    return webhook_app(
        receiver="w",
        key=kw.pop("key", WKEY),
        mapper=mapper,
        log_port=log or MemoryLog(),
        sink=DeadLetterSink("cases/test", "cases", DeadLetterSealer(bytes(32))),
        deliveries=MemoryDeliveryStore(),
        **kw,
    )


async def raw_request(port: int, head: bytes, body_part: bytes, timeout: float = 3.0) -> bytes:
    """Send a request's head and only the start of its body; the status line that comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()


async def test_an_unsigned_request_is_refused_before_its_body_is_read() -> None:
    """A sender announcing 5 MiB without signature headers gets 401 while it is still
    sending: the receiver does not wait for (or buffer) the body first."""
    runner, port = await serve(hook())
    try:
        head = (
            b"POST /webhooks/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY}\r\n\r\n".encode()
        )
        status = await raw_request(port, head, b"{" * 1024)
        assert status.startswith(b"HTTP/1.1 401")
        # a signed-looking but oversized declaration: 413 before reading
        body_head = signed_headers(WKEY, "d1", b"")
        big = (
            b"POST /webhooks/cases HTTP/1.1\r\nHost: x\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in body_head.items())
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        assert (await raw_request(port, big, b"x" * 1024)).startswith(b"HTTP/1.1 413")
    finally:
        await runner.cleanup()


async def test_the_eido_receiver_with_a_key_refuses_unsigned_requests_before_reading_too() -> None:
    eido = EidoMapper(load_profile("eido"))
    app = eido_app(
        mapper=eido, log_port=MemoryLog(), revisions=MemoryRevisionStore(), key=WKEY,
        sink=DeadLetterSink(eido.source, "cad", DeadLetterSealer(bytes(32))),
    )
    runner, port = await serve(app)
    try:
        head = f"POST /eido HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n".encode()
        assert (await raw_request(port, head, b"{" * 1024)).startswith(b"HTTP/1.1 401")
    finally:
        await runner.cleanup()


async def test_a_chunked_body_over_the_limit_is_413_and_a_bad_signature_401() -> None:
    log = MemoryLog()
    async with TestClient(TestServer(hook(log, max_body=100_000))) as client:
        body = json.dumps({"records": [CASE] * 2000}).encode()  # > 100 kB

        async def chunks() -> Any:
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        over = await client.post("/webhooks/cases", data=chunks(), headers=signed_headers(WKEY, "d1", body))
        assert over.status == 413 and "exceeds 100000 bytes" in (await over.json())["error"]
        small = json.dumps(CASE).encode()
        forged = signed_headers(b"k" * 32, "d2", small)
        bad = await client.post("/webhooks/cases", data=small, headers=forged)
        assert bad.status == 401 and (await bad.json())["error"] == "bad signature"
        ok = await client.post("/webhooks/cases", data=small, headers=signed_headers(WKEY, "d3", small))
        assert ok.status == 202
    assert len(log.events) == 1


async def test_a_source_over_its_rate_or_concurrency_gets_429() -> None:
    limits = SourceLimits(rate_per_second=0.01, burst=2, max_concurrent=1, body_timeout_seconds=5)
    async with TestClient(TestServer(hook(limits=limits))) as client:
        body = json.dumps(CASE).encode()
        for i in range(2):
            r = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, f"d{i}", body))
            assert r.status in (200, 202)
        third = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d9", body))
        assert third.status == 429 and int(third.headers["Retry-After"]) >= 1

    slow_limits = SourceLimits(rate_per_second=100, burst=100, max_concurrent=1, body_timeout_seconds=5)
    runner, port = await serve(hook(limits=slow_limits))
    try:
        body = json.dumps(CASE).encode()
        head = (
            b"POST /webhooks/cases HTTP/1.1\r\nHost: x\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in signed_headers(WKEY, "slow", body).items())
            + f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 100")
        await reader.readline()
        writer.write(body[:10])  # a request in progress: its body still arriving
        await writer.drain()
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/webhooks/cases"
            second = await client.post(url, content=body, headers=signed_headers(WKEY, "d2", body))
            assert second.status_code == 429 and "in progress" in second.json()["error"]
            writer.write(body[10:])
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 202")
            writer.close()
            third = await client.post(url, content=body, headers=signed_headers(WKEY, "d3", body))
            assert third.status_code == 202  # the slot was released
    finally:
        await runner.cleanup()


async def test_a_body_not_sent_in_time_is_408() -> None:
    limits = SourceLimits(body_timeout_seconds=0.3)
    runner, port = await serve(hook(limits=limits))
    try:
        body = json.dumps(CASE).encode()
        head = (
            b"POST /webhooks/cases HTTP/1.1\r\nHost: x\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in signed_headers(WKEY, "d1", body).items())
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert (await raw_request(port, head, body[:5])).startswith(b"HTTP/1.1 408")
    finally:
        await runner.cleanup()


def test_an_empty_or_short_key_never_authenticates_anything() -> None:
    body = b'{"a": 1}'
    forged = signed_headers(b"", "d1", body, now=1000)
    assert verify(b"", forged, body, now=1000) == "the receiver has no signing key"
    for weak in (b"", b"short"):
        with pytest.raises(ConfigError, match="empty or shorter than 16 bytes"):
            hook(key=weak)
    eido = EidoMapper(load_profile("eido"))
    with pytest.raises(ConfigError, match="empty or shorter"):
        eido_app(mapper=eido, log_port=MemoryLog(), revisions=None, key=b"",
                 sink=DeadLetterSink(eido.source, "cad", DeadLetterSealer(bytes(32))))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (b'{"records": [' + b"[" * 40 + b"]" * 40 + b"]}", "nested deeper"),
        (json.dumps({**CASE, "program": "a\u0000b"}).encode(), "NUL"),
        (b'{"a": "\x00"}', "NUL"),
        (b"\xff\xfe{}", "UnicodeDecodeError"),
        (b"{not json", "not JSON"),
    ],
)
async def test_malformed_bodies_are_400_with_a_clear_message_never_500(body: bytes, message: str) -> None:
    log = MemoryLog()
    async with TestClient(TestServer(hook(log))) as client:
        r = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        assert r.status == 400 and message in (await r.json())["error"]
    eido = EidoMapper(load_profile("eido"))
    app = eido_app(mapper=eido, log_port=log, revisions=MemoryRevisionStore(),
                   sink=DeadLetterSink(eido.source, "cad", DeadLetterSealer(bytes(32))))
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/eido", data=body)
        assert r.status == 400 and message in (await r.json())["reason"]
    assert log.events == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=30,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_no_body_makes_a_receiver_answer_500(body: bytes) -> None:
    async def probe() -> tuple[int, int]:
        eido = EidoMapper(load_profile("eido"))
        eido_rx = eido_app(mapper=eido, log_port=MemoryLog(), revisions=MemoryRevisionStore(),
                           sink=DeadLetterSink(eido.source, "cad", DeadLetterSealer(bytes(32))))
        async with TestClient(TestServer(hook())) as a, TestClient(TestServer(eido_rx)) as b:
            ra = await a.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
            rb = await b.post("/eido", data=body)
            return ra.status, rb.status

    statuses = asyncio.run(probe())
    assert all(s < 500 for s in statuses), statuses


async def test_receivers_serve_tls_and_refuse_plaintext_outside_development(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    config = TlsServerConfig(tls=TlsFiles(certfile=certs.certfile, keyfile=certs.keyfile))
    ctx = server_context(config, name="w", development=False)
    assert isinstance(ctx, ssl.SSLContext)
    runner, port = await serve(hook(), ssl_context=ctx)
    try:
        body = json.dumps(CASE).encode()
        async with httpx.AsyncClient(verify=certs.client_context()) as client:
            r = await client.post(f"https://127.0.0.1:{port}/webhooks/cases", content=body,
                                  headers=signed_headers(WKEY, "d1", body))
            assert r.status_code == 202
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.post(f"http://127.0.0.1:{port}/webhooks/cases", content=body)
    finally:
        await runner.cleanup()
    with pytest.raises(ConfigError, match="refusing to listen in plaintext outside development"):
        server_context(TlsServerConfig(), name="'w' (case-webhook)", development=False)
    assert server_context(TlsServerConfig(tls_terminated_in_front=True), name="w", development=False) is None
    assert server_context(TlsServerConfig(), name="w", development=True) is None
    missing = TlsServerConfig(tls=TlsFiles(certfile=tmp_path / "none.pem", keyfile=tmp_path / "none.key"))
    with pytest.raises(ConfigError, match=r"none\.pem"):
        server_context(missing, name="w", development=False)
