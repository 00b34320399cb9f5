"""HTTP endpoint a CAD pushes NENA EIDO documents to.

``POST /eido`` with one EIDO JSON document: 202 ``{"event_ids": [...], "appended": n,
"duplicates": d}``; a document that cannot be mapped: 400 ``{"reason": ...,
"dead_letter": true}`` and the document is kept as a dead letter. A later revision of
the same incident (newer last-update time) becomes a ``CallRevised`` fact.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from connectors.cad.eido import EidoMapper, eido_record
from connectors.core.ports import LogPort, RevisionStore
from connectors.core.runner import DeadLetterSink, ingest_batch

MAX_BODY = 5 * 1024 * 1024


def eido_app(
    *,
    mapper: EidoMapper,
    log_port: LogPort,
    sink: DeadLetterSink,
    revisions: RevisionStore | None,
    path: str = "/eido",
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        ref = "http:" + hashlib.sha256(body).hexdigest()[:16]
        ids: list[str] = []
        counts = await ingest_batch([eido_record(body, ref)], mapper, log_port, sink, revisions, ids)
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

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(path, handle)
    return app
