"""One-shot import of CAD export files (``hub ingest cad``): CSV files of a profile, or
EIDO JSON files (one document, or an array of documents, per file).

The orchestration takes its ports as arguments, so the same code runs against the real
log and against the in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from connectors.cad.csvfile import read_csv_file
from connectors.cad.eido import EidoMapper, eido_record
from connectors.cad.mapping import CadMapper
from connectors.cad.profile import Profile
from connectors.core.counts import IngestCounts
from connectors.core.ports import LogPort, RevisionStore
from connectors.core.records import Mapper, RawRecord
from connectors.core.runner import DeadLetterSink, ingest_batches
from hub.kernel.crypto import Keyring
from hub.kernel.gcpolicy import batch_gc
from hub.kernel.keystore import DeadLetterSealer

CHUNK = 1000
GC_CHUNKS = 4


def mapper_for(profile: Profile, source: str | None = None, keyring: Keyring | None = None) -> Mapper:
    """The mapper of ``profile``; with a ``keyring`` a CSV row's free text (remarks,
    clearance text beyond the code) is sealed per incident, without one it is dropped."""
    return EidoMapper(profile, source) if profile.format == "eido" else CadMapper(profile, source, keyring)


def read_eido_file(path: Path) -> list[RawRecord]:
    """EIDO documents of a file: a JSON object is one document, a JSON array many."""
    data = Path(path).read_bytes()
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return [eido_record(data, f"{path.name}")]
    if isinstance(parsed, list):
        out = []
        for i, item in enumerate(parsed):
            raw = json.dumps(item, separators=(",", ":")).encode()
            out.append(eido_record(raw, f"{path.name}[{i}]"))
        return out
    return [eido_record(data, path.name)]


def read_records(path: Path, profile: Profile) -> list[RawRecord]:
    if profile.format == "eido":
        return read_eido_file(path)
    return read_csv_file(path, profile)


def chunks(records: Sequence[RawRecord], size: int = CHUNK) -> Iterable[Sequence[RawRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


async def ingest_files(
    paths: Sequence[Path],
    profile: Profile,
    log_port: LogPort,
    sealer: DeadLetterSealer,
    revisions: RevisionStore | None = None,
    source: str | None = None,
    profile_ref: str | None = None,
    keyring: Keyring | None = None,
) -> IngestCounts:
    """Import every file, a chunk at a time, pipelined (:func:`ingest_batches`: the next
    chunk's claims and keys are looked up while this one is mapped and the last ones are
    written); layout errors (missing file, wrong
    header) raise before any record of *that* file is appended. Dead letters name
    ``profile_ref`` (the recorded profile, see :mod:`connectors.cad.used_profile`), else
    the profile's name. ``keyring``
    (the runtime's key store) seals free text per incident."""
    mapper = mapper_for(profile, source, keyring)
    sink = DeadLetterSink(mapper.source, "cad", sealer, profile_ref or profile.name)
    # a batch job: a young collection per GC_CHUNKS chunks (each traverses the chunks in
    # flight, 6 to 13 ms, and has found no garbage cycle in a CAD import)
    with batch_gc(GC_CHUNKS) as collector:

        def collected() -> Iterator[Sequence[RawRecord]]:
            for path in paths:
                for chunk in chunks(read_records(Path(path), profile)):
                    yield chunk
                    collector.batch_done()

        return await ingest_batches(collected(), mapper, log_port, sink, revisions)
