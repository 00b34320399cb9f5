"""Signed webhook receiver for case-management systems.

A request carries three headers:

- ``X-Hub-Delivery``: the sender's unique delivery id;
- ``X-Hub-Timestamp``: Unix seconds when it was signed;
- ``X-Hub-Signature``: ``sha256=`` + hex HMAC-SHA256 over
  ``"<timestamp>.<delivery id>." + body`` with the shared key (``webhook.key``).

Answers:

- 401 unsigned, badly signed or stale (timestamp outside ``tolerance`` seconds: a
  replay) — nothing appended; the headers are checked before any of the body is read,
  the signature while the body streams in (:func:`connectors.core.http.read_body`);
- 413 a body over ``max_body`` (a declared length is refused before reading), 408 a body
  not sent within the time limit, 429 a source over its rate or concurrency limits
  (``limits``, :class:`connectors.core.limits.SourceLimits`);
- 200 ``{"duplicate": true, ...}`` a delivery id already accepted with the same body (a
  sender retrying after a lost 202, or a replay inside the tolerance window) — nothing
  appended, and the sender can stop retrying;
- 409 a delivery id already accepted with a *different* body — nothing appended;
- 400 body not JSON (or not UTF-8, nested too deep, with NUL characters:
  :func:`connectors.core.jsondoc.parse_json`) / not a record or ``{"records": [...]}``;
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
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.http import Refused, limits_middleware, read_body, unavailable_response
from connectors.core.jsondoc import BadJson, parse_json
from connectors.core.limits import SourceLimits
from connectors.core.ports import DeliveryStore, LogPort
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.errors import ConfigError, TransientError

SIGNATURE_HEADER = "X-Hub-Signature"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
DELIVERY_HEADER = "X-Hub-Delivery"
MAX_BODY = 5 * 1024 * 1024
#: the shortest signing key a receiver accepts (an empty key would let anyone sign)
MIN_KEY_BYTES = 16
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")
_DELIVERY = re.compile(r"^[\x21-\x7e]{1,200}$")


def check_key(key: bytes | None, receiver: str) -> bytes:
    """``key`` if it can authenticate requests, else ConfigError naming ``receiver``."""
    if not key or len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{receiver}: the signing key is empty or shorter than {MIN_KEY_BYTES} bytes; "
            "an empty key would let anyone sign requests"
        )
    return key


def sign(key: bytes, timestamp: str, delivery_id: str, body: bytes) -> str:
    """The signature header value for a request (senders and tests use this)."""
    mac = signing_mac(key, timestamp, delivery_id)
    mac.update(body)
    return "sha256=" + mac.hexdigest()


def signing_mac(key: bytes, timestamp: str, delivery_id: str) -> hmac.HMAC:
    """The request's HMAC fed with the signed prefix; the body is fed as it arrives."""
    return hmac.new(key, f"{timestamp}.{delivery_id}.".encode(), hashlib.sha256)


def signed_headers(key: bytes, delivery_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if now is None else now))
    return {
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(key, ts, delivery_id, body),
        "Content-Type": "application/json",
    }


def check_headers(headers: dict[str, str] | Any, now: float, tolerance: float = 300) -> str | None:
    """What can be refused before the body is read: ``None`` when the delivery id,
    timestamp and signature headers are present, well-formed and fresh, else the reason."""
    delivery = headers.get(DELIVERY_HEADER)
    ts = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if not delivery or not ts or not signature:
        return "unsigned request (delivery, timestamp and signature headers are required)"
    if not _DELIVERY.match(delivery):
        return "bad delivery id header (1-200 printable ASCII characters)"
    try:
        stamp = int(ts)
    except ValueError:
        return "bad timestamp header"
    if abs(now - stamp) > tolerance:
        return "stale timestamp (possible replay)"
    if not _SIGNATURE.match(signature.strip()):
        return "bad signature header (sha256=<64 hex digits>)"
    return None


def verify(
    key: bytes, headers: dict[str, str] | Any, body: bytes, now: float, tolerance: float = 300
) -> str | None:
    """``None`` when the request is authentic and fresh, else the reason to refuse it
    (a receiver without a key refuses everything)."""
    if not key:
        return "the receiver has no signing key"
    refused = check_headers(headers, now, tolerance)
    if refused:
        return refused
    expected = sign(key, headers[TIMESTAMP_HEADER], headers[DELIVERY_HEADER], body).encode()
    if not hmac.compare_digest(expected, headers[SIGNATURE_HEADER].strip().encode()):
        return "bad signature"
    return None


async def read_signed(
    request: web.Request,
    key: bytes,
    now: float,
    tolerance: float,
    max_body: int,
    timeout: float,
) -> bytes:
    """The body of an authentic, fresh request, checked before any of it is read (headers)
    and while it streams (size, HMAC); else :class:`connectors.core.http.Refused`."""
    refused = check_headers(request.headers, now, tolerance) if key else "the receiver has no signing key"
    if refused:
        raise Refused(401, refused)
    mac = signing_mac(key, request.headers[TIMESTAMP_HEADER], request.headers[DELIVERY_HEADER])
    signature = request.headers[SIGNATURE_HEADER].strip().encode()
    return await read_body(request, max_body=max_body, timeout=timeout, mac=mac, signature=signature)


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
    max_body: int = MAX_BODY,
    limits: SourceLimits | None = None,
) -> web.Application:
    """The webhook receiver (see the module docstring); ``key`` must be at least
    :data:`MIN_KEY_BYTES` long (ConfigError otherwise)."""
    key = check_key(key, f"case webhook {receiver}")
    limits = limits or SourceLimits()

    async def handle(request: web.Request) -> web.Response:
        try:
            body = await read_signed(
                request, key, clock(), tolerance, max_body, limits.body_timeout_seconds
            )
            return await accept(request, body)
        except Refused as exc:
            return exc.response()
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
            payload = parse_json(body)
        except BadJson as exc:
            return web.json_response({"error": str(exc)}, status=400)
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

    app = web.Application(client_max_size=max_body, middlewares=[limits_middleware(limits)])
    app.router.add_post(path, handle)
    return app
