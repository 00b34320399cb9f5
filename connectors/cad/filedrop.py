"""A directory that CAD exports are dropped into (the long-lived form of ``hub ingest cad``).

Each poll takes the next file (by name) whose name and content digest are not yet in the
cursor; the cursor ``{"done": {name: sha256}}`` is committed after the file's records are
all in the log. A file rewritten with new content is read again (its unchanged rows are
refused by the log as duplicates). Layout errors surface as source errors (backed off,
visible in metrics) rather than as per-row dead letters.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from connectors.cad.ingest import read_records
from connectors.cad.profile import Profile
from connectors.core.records import Batch


class FileDropSource:
    def __init__(self, name: str, directory: Path, profile: Profile, pattern: str = "*.csv") -> None:
        self.name = name
        self.directory = Path(directory)
        self.profile = profile
        self.pattern = pattern

    def pending(self, cursor: Any | None) -> list[tuple[Path, str]]:
        done = (cursor or {}).get("done", {})
        out = []
        for path in sorted(self.directory.glob(self.pattern)):
            if not path.is_file():
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
