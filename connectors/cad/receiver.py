"""HTTP endpoint a CAD pushes NENA EIDO documents to.

``POST /eido`` with one EIDO JSON document: 202 ``{"event_ids": [...], "appended": n,
"duplicates": d}``; a document that cannot be mapped: 400 ``{"reason": ...,
"dead_letter": true}`` and the document is kept as a dead letter; the log or PostgreSQL
unavailable: 503 with ``Retry-After`` and nothing kept (the CAD resends). A later revision of
the same incident (newer last-update time) becomes a ``CallRevised`` fact.

Authentication: with a ``key``, every request must be signed exactly like a case webhook
(``X-Hub-Delivery``, ``X-Hub-Timestamp``, ``X-Hub-Signature`` = ``sha256=`` HMAC-SHA256 over
``"<timestamp>.<delivery id>." + body``, see :mod:`connectors.cases.webhook`); unsigned,
badly signed or stale requests get 401: the headers are checked before any of the body is
read, the signature while it streams in (:func:`connectors.cases.webhook.read_signed`).
Without a key the endpoint is open, which the ``eido-receiver`` component allows only on a
loopback address or with an explicit ``auth: none`` (behind a proxy that authenticates the
CAD, e.g. with mutual TLS). Bodies are limited to ``max_body`` bytes (413 beyond, 408 when
not sent in time) and each source to its ``limits`` (429 beyond,
:class:`connectors.core.limits.SourceLimits`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from aiohttp import web

from connectors.cad.eido import EidoMapper, eido_record
from connectors.cases.webhook import check_key, read_signed
from connectors.core.http import Refused, limits_middleware, read_body, unavailable_response
from connectors.core.limits import SourceLimits
from connectors.core.ports import LogPort, RevisionStore
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.kernel.errors import TransientError

MAX_BODY = 5 * 1024 * 1024


def eido_app(
    *,
    mapper: EidoMapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    revisions: RevisionStore | None,
    path: str = "/eido",
    key: bytes | None = None,
    tolerance: float = 300,
    clock: Callable[[], float] = time.time,
    max_body: int = MAX_BODY,
    limits: SourceLimits | None = None,
) -> web.Application:
    """The EIDO receiver (see the module docstring); a ``key`` shorter than
    :data:`connectors.cases.webhook.MIN_KEY_BYTES` is ConfigError (None: no signatures)."""
    if key is not None:
        key = check_key(key, f"EIDO receiver {path}")
    limits = limits or SourceLimits()

    async def handle(request: web.Request) -> web.Response:
        timeout = limits.body_timeout_seconds
        try:
            if key is not None:
                body = await read_signed(request, key, clock(), tolerance, max_body, timeout)
            else:
                body = await read_body(request, max_body=max_body, timeout=timeout)
        except Refused as exc:
            return exc.response()
        ref = "http:" + hashlib.sha256(body).hexdigest()[:16]
        ids: list[str] = []
        try:
            counts = await ingest_batch([eido_record(body, ref)], mapper, log_port, sink, revisions, ids)
        except TransientError as exc:
            return unavailable_response(f"EIDO receiver {path}", exc)
        if counts.dead_lettered:
            reason = next(iter(counts.reasons), "rejected")
            return web.json_response({"reason": reason, "dead_letter": True}, status=400)
        return web.json_response(
            {
                "event_ids": ids,
                "appended": counts.events_appended,
                "duplicates": counts.events_duplicate,
                "excluded": counts.excluded,
            },
            status=202,
        )

    app = web.Application(client_max_size=max_body, middlewares=[limits_middleware(limits)])
    app.router.add_post(path, handle)
    return app
