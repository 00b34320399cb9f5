"""REST JSON polling of a case-management system by ``updated_since``.

``GET <url>?updated_since=<T>&offset=<K>&limit=<N>`` answers ``{"records": [...]}``
ordered by (``updated_at``, ``record_id``). The cursor ``{"t": T, "skip": K}`` works as
in :mod:`connectors.cad.soql` (keyset on updated-at plus an offset within one instant).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from connectors.cad.soql import EPOCH, next_cursor
from connectors.cases.mapping import case_record
from connectors.core.records import Batch


class CaseRestSource:
    def __init__(
        self, name: str, url: str, *, page_size: int = 500, timeout: float = 30.0, token: str | None = None
    ) -> None:
        self.name = name
        self.url = url
        self.page_size = page_size
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    async def read(self, cursor: Any | None) -> Batch:
        t = (cursor or {}).get("t", EPOCH)
        skip = int((cursor or {}).get("skip", 0))
        params = {"updated_since": t, "offset": str(skip), "limit": str(self.page_size)}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        async with self._session.get(self.url, params=params) as resp:
            if resp.status != 200:
                raise ConnectionError(f"{self.name}: HTTP {resp.status} from the case system")
            body = await resp.json(content_type=None)
        rows = body.get("records") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f"{self.name}: the answer has no 'records' array")
        records = [
            case_record(
                row, f"{self.name}?updated_since={t}@{skip + i}", json.dumps(row, sort_keys=True).encode()
            )
            for i, row in enumerate(rows)
        ]
        dict_rows = [r if isinstance(r, dict) else {} for r in rows]
        return Batch(
            records,
            cursor=next_cursor(cursor, dict_rows, "updated_at"),
            meta={"more": len(rows) >= self.page_size},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
