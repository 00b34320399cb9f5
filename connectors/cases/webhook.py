"""Signed webhook receiver for case-management systems.

A request carries three headers:

- ``X-Hub-Delivery``: the sender's unique delivery id;
- ``X-Hub-Timestamp``: Unix seconds when it was signed;
- ``X-Hub-Signature``: ``sha256=`` + hex HMAC-SHA256 over
  ``"<timestamp>.<delivery id>." + body`` with the shared key (``webhook.key``).

Answers:

- 401 unsigned, badly signed or stale (timestamp outside ``tolerance`` seconds: a
  replay) — nothing appended;
- 200 ``{"duplicate": true, ...}`` a delivery id already accepted with the same body (a
  sender retrying after a lost 202, or a replay inside the tolerance window) — nothing
  appended, and the sender can stop retrying;
- 409 a delivery id already accepted with a *different* body — nothing appended;
- 400 body not JSON / not a record or ``{"records": [...]}``;
- 202 accepted with the counts and event ids (records that cannot be mapped are
  dead-lettered, not refused);
- 503 with ``Retry-After`` when the log, the key store or PostgreSQL is unavailable:
  nothing is dead-lettered and the delivery is not recorded, so the sender's retry is
  processed in full.

Invariant: a delivery id is appended at most once per receiver (checked before the
append and recorded after it; two concurrent copies both reach the log, whose
deterministic ids keep one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.http import unavailable_response
from connectors.core.ports import DeliveryStore, LogPort
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.errors import TransientError

SIGNATURE_HEADER = "X-Hub-Signature"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
DELIVERY_HEADER = "X-Hub-Delivery"
MAX_BODY = 5 * 1024 * 1024


def sign(key: bytes, timestamp: str, delivery_id: str, body: bytes) -> str:
    """The signature header value for a request (senders and tests use this)."""
    mac = hmac.new(key, f"{timestamp}.{delivery_id}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(key: bytes, delivery_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if now is None else now))
    return {
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(key, ts, delivery_id, body),
        "Content-Type": "application/json",
    }


def verify(
    key: bytes, headers: dict[str, str] | Any, body: bytes, now: float, tolerance: float = 300
) -> str | None:
    """``None`` when the request is authentic and fresh, else the reason to refuse it."""
    delivery = headers.get(DELIVERY_HEADER)
    ts = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not delivery or not ts or not signature:
        return "unsigned request (delivery, timestamp and signature headers are required)"
    try:
        stamp = int(ts)
    except ValueError:
        return "bad timestamp header"
    # constant-time, over bytes: a non-ASCII header must be refused (401), not crash (500)
    expected = sign(key, ts, delivery, body).encode()
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        return "bad signature"
    if abs(now - stamp) > tolerance:
        return "stale timestamp (possible replay)"
    return None


def webhook_app(
    *,
    receiver: str,
    key: bytes,
    mapper: CaseMapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    deliveries: DeliveryStore,
    path: str = "/webhooks/cases",
    tolerance: float = 300,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        refused = verify(key, request.headers, body, clock(), tolerance)
        if refused:
            return web.json_response({"error": refused}, status=401)
        try:
            return await accept(request, body)
        except TransientError as exc:
            return unavailable_response(f"case webhook {receiver}", exc)

    async def accept(request: web.Request, body: bytes) -> web.Response:
        delivery = request.headers[DELIVERY_HEADER]
        digest = hashlib.sha256(body).hexdigest()
        prior = await deliveries.lookup(receiver, delivery)
        if prior is not None:
            if prior.body_sha256 is not None and prior.body_sha256 != digest:
                return web.json_response(
                    {"error": "delivery id already used for a different body", "delivery": delivery},
                    status=409,
                )
            return web.json_response(
                {"delivery": delivery, "duplicate": True, "appended": 0, "events": prior.events},
                status=200,
            )
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        items = payload.get("records", [payload]) if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            return web.json_response({"error": "expected a record or {'records': [...]}"}, status=400)
        records = [
            case_record(item, f"webhook:{delivery}[{i}]", json.dumps(item, sort_keys=True).encode())
            for i, item in enumerate(items)
        ]
        ids: list[str] = []
        counts = await ingest_batch(records, mapper, log_port, sink, None, ids)
        await deliveries.record(receiver, delivery, counts.events_appended, digest)
        return web.json_response(
            {
                "delivery": delivery,
                "duplicate": False,
                "read": counts.read,
                "appended": counts.appended,
                "duplicates": counts.duplicates,
                "dead_lettered": counts.dead_lettered,
                "excluded": counts.excluded,
                "event_ids": ids,
            },
            status=202,
        )

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(path, handle)
    return app
