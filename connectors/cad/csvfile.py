"""Reading CAD CSV exports into raw records (the thin I/O shell around the pure parser).

Invariants: the header must contain every column the profile reads (else the *file* is
refused with a clear error: no row of a wrongly-profiled file becomes a dead letter);
each data row becomes one :class:`RawRecord` whose ``ref`` is ``<file>:<line>`` (its raw
bytes, the row written back as one CSV line, are built only for a dead letter); a row
with the wrong number of columns is a record with a ``problem`` (dead-lettered with the
reason); blank lines are not records. Records of a file carry the file's modification
time as ``observed_at`` (it dates revisions of rows that have no updated-at column).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from connectors.cad.profile import Profile
from connectors.core.records import RawRecord
from hub.kernel.errors import PermanentError


class CsvLayoutError(PermanentError, ValueError):
    """The file does not have the profile's layout (missing columns, no header)."""


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM); exports from older systems fall back to cp1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _raw(row: list[str]) -> bytes:
    """The bytes a dead letter keeps of a row: the row written back as one CSV line."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue().encode("utf-8")


def parse_csv(
    content: str, profile: Profile, name: str, observed_at: datetime | None = None
) -> Iterator[RawRecord]:
    """Records of one CSV document (pure)."""
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CsvLayoutError(f"{name}: empty file (no header)") from None
    missing = [c for c in profile.required_columns if c not in header]
    if missing:
        raise CsvLayoutError(f"{name}: not a {profile.name!r} export: missing column(s) {', '.join(missing)}")
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        ref = f"{name}:{start}"
        if len(row) != len(header):
            yield RawRecord(
                ref=ref,
                raw=_raw(row),
                problem=f"wrong column count: expected {len(header)}, found {len(row)}",
                observed_at=observed_at,
            )
            continue
        # the raw bytes are written only when asked for (a dead letter): most rows map
        yield RawRecord(
            ref, fields=dict(zip(header, row, strict=True)), observed_at=observed_at,
            encode=partial(_raw, row),
        )


def file_time(path: Path) -> datetime:
    """A file's modification time (UTC)."""
    return datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)


def read_csv_file(path: Path, profile: Profile) -> list[RawRecord]:
    path = Path(path)
    return list(parse_csv(decode(path.read_bytes()), profile, path.name, file_time(path)))
