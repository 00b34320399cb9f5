"""The workers' /metrics, /livez and /readyz (issue 13 item 6): a projector without
progress stops being alive; readiness follows the command's start; metrics are served."""

from __future__ import annotations

import asyncio

from hub.kernel import metrics
from hub.kernel.probes import Probes, progress_check, route, serve_probes


def test_liveness_fails_once_projection_progress_is_stale() -> None:
    clock = [1000.0]
    metrics.PROJECTION_PROGRESS.set(0)
    check = progress_check(60, now=lambda: clock[0])
    probes = Probes(checks=[check])
    assert route("GET", "/livez", probes)[0] == 200  # starting up counts as progress
    clock[0] += 61
    status, _, body = route("GET", "/livez", probes)
    assert status == 503 and b"no projection progress for 61s" in body
    metrics.PROJECTION_PROGRESS.set(clock[0] - 5)  # a batch was applied 5 s ago
    assert route("GET", "/livez", probes)[0] == 200


def test_readiness_metrics_and_bad_requests() -> None:
    probes = Probes()
    assert route("GET", "/readyz", probes)[0] == 503
    probes.ready = True
    assert route("GET", "/readyz?verbose=1", probes)[0] == 200
    status, ctype, body = route("GET", "/metrics", probes)
    assert status == 200 and ctype.startswith("text/plain")
    assert b"hub_projection_progress_timestamp_seconds" in body
    assert route("GET", "/nothing", probes)[0] == 404
    assert route("POST", "/livez", probes)[0] == 405


async def test_the_endpoint_answers_over_http_and_a_taken_port_is_not_fatal() -> None:
    probes = Probes(ready=True)
    async with serve_probes("127.0.0.1", 0, probes) as disabled:
        assert disabled is None
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with serve_probes("127.0.0.1", free, probes) as port:
        assert port == free
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ready\n")
        async with serve_probes("127.0.0.1", port, probes) as taken:  # a second worker on one machine
            assert taken is None
