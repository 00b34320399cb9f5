"""A directory that CAD exports are dropped into (the long-lived form of ``hub ingest cad``).

Each poll takes the next file (by name) whose name and content digest are not yet in the
cursor; the cursor ``{"done": {name: sha256}}`` is committed after the file's records are
all in the log. A file rewritten with new content is read again (its unchanged rows are
refused by the log as duplicates; its revised rows become ``CallRevised`` facts).
Layout errors surface as source errors (backed off, visible in metrics) rather than as
per-row dead letters.

A file is taken only once it has *settled*: unmodified for ``settle_seconds`` (a CAD that
writes the export in place is not read half-written, which would dead-letter a cut-off
last row). Writers that rename a finished file into the folder can use ``settle: 0``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.cad.ingest import read_records
from connectors.cad.profile import Profile
from connectors.core.records import Batch


def settled(mtime: float, now: float, settle_seconds: float) -> bool:
    """A file last modified at ``mtime`` may be read at ``now`` (pure)."""
    return now - mtime >= settle_seconds


class FileDropSource:
    def __init__(
        self,
        name: str,
        directory: Path,
        profile: Profile,
        pattern: str = "*.csv",
        *,
        settle_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.directory = Path(directory)
        self.profile = profile
        self.pattern = pattern
        self.settle_seconds = settle_seconds
        self.clock = clock

    def pending(self, cursor: Any | None) -> list[tuple[Path, str]]:
        """Settled files (by name) whose content digest is not the one in the cursor."""
        done = (cursor or {}).get("done", {})
        out = []
        now = self.clock()
        for path in sorted(self.directory.glob(self.pattern)):
            if not path.is_file() or not settled(path.stat().st_mtime, now, self.settle_seconds):
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if done.get(path.name) != digest:
                out.append((path, digest))
        return out

    async def read(self, cursor: Any | None) -> Batch:
        todo = self.pending(cursor)
        if not todo:
            return Batch([], cursor=cursor)
        path, digest = todo[0]
        records = read_records(path, self.profile)
        done = dict((cursor or {}).get("done", {}))
        done[path.name] = digest
        return Batch(records, cursor={"done": done}, meta={"more": len(todo) > 1})

    async def close(self) -> None:
        return None
