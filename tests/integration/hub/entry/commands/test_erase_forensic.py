"""``hub erase`` read as a forensic examiner would: after the erasure, every file under the
PostgreSQL data directory (heap, indexes, WAL, after a CHECKPOINT) and under the local
Kafka log directories is read with ``master.key`` in hand, and none of the person's clear
identifiers (name, date of birth, MPI id), their clinical text or the CAD remark naming
them is found — nor any wrapped data key that ``master.key`` opens — while ``hub verify``
passes and the aggregate report is unchanged.

The scenario goes through the real connectors: a CAD row whose remark names the person,
case records linking the person to that incident with a contact note, and a broken case
record of the person that becomes a dead letter. Runs as root (reads PostgreSQL's files;
``runuser -u postgres`` for ``CHECKPOINT`` and ``SHOW data_directory``)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

import pytest

from connectors.cad.mapping import CadMapper
from connectors.cad.profile import load_profile
from connectors.cases.mapping import CaseMapper, case_record
from connectors.core.records import RawRecord
from connectors.core.runner import DeadLetterSink, ingest_batch
from hub.bootstrap import open_runtime
from hub.devtools.infra.kafka import KafkaLayout
from hub.kernel.crypto import incident_subject
from hub.kernel.identity import pseudonymize
from hub.kernel.keys import secret_bytes
from hub.kernel.keystore import unwrap_key
from hub.kernel.namespace import Namespace
from projections.projector import project
from tests.conftest import in_ci, session_settings
from tests.integration.hubcli import run_hub

pytestmark = pytest.mark.integration

SOURCE = "cases/forensic"
SYSTEM = "mpi:county"
WINDOW = 512  # bytes after a key id in which a wrapped key would sit
CHUNK = 64 << 20


def _files(roots: Iterable[Path]) -> Iterable[Path]:
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                yield Path(dirpath) / name


def _chunks(path: Path, overlap: int) -> Iterable[tuple[int, bytes]]:
    """(offset, bytes) of ``path`` in large chunks that overlap by ``overlap`` bytes (one
    read of each file per scan, whatever the number of needles)."""
    try:
        with open(path, "rb") as fh:
            offset, tail = 0, b""
            while chunk := fh.read(CHUNK):
                yield offset - len(tail), tail + chunk
                offset += len(chunk)
                tail = chunk[-overlap:]
    except OSError:
        return  # a temporary file removed while reading


def scan(roots: Iterable[Path], needles: Iterable[bytes]) -> dict[bytes, list[str]]:
    """Needle → the files holding it (every regular file under ``roots``)."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    overlap = max(len(n) for n in found)
    for path in _files(roots):
        hit: set[bytes] = set()
        for _, data in _chunks(path, overlap):
            hit.update(n for n in found if n not in hit and data.find(n) >= 0)
        for n in hit:
            found[n].append(str(path))
    return found


def master_key_openings(roots: Iterable[Path], master: bytes, kid: str) -> list[str]:
    """Every place where bytes near ``kid`` open as a data key wrapped by ``master`` (the
    layout before the token: nonce 12 ‖ AES-GCM(32-byte key) ‖ tag 16)."""
    hits: list[str] = []
    needle = kid.encode()
    for path in _files(roots):
        for base, data in _chunks(path, WINDOW + len(needle)):
            pos = data.find(needle)
            while pos >= 0:
                window = data[pos : pos + len(needle) + WINDOW]
                for off in range(len(needle), len(window) - 59):
                    try:
                        unwrap_key(master, kid, window[off : off + 60])
                    except ValueError:
                        continue
                    hits.append(f"{path}@{base + pos + off}")
                pos = data.find(needle, pos + 1)
    return hits


def as_postgres(sql: str, port: int) -> str:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-tAc", sql],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return out.stdout.strip()


def report_counts(settings: object) -> dict:
    out = run_hub(settings, "report", "--json")  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return {k: v for k, v in doc.items() if k not in {"generated_at", "as_of"}}


async def test_erased_person_is_nowhere_in_the_database_or_log_files(services: object) -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        if in_ci():
            pytest.fail("the forensic erasure test reads PostgreSQL's files: it must run as root")
        pytest.skip("reads PostgreSQL's data directory: needs root")
    settings = session_settings()
    kafka_data = KafkaLayout.of(settings).data
    if not kafka_data.is_dir():
        if in_ci():
            pytest.fail(f"no local Kafka log directory at {kafka_data}")
        pytest.skip("Kafka is not the local broker of hub infra up")
    port = settings.postgres.port
    pg_data = Path(as_postgres("SHOW data_directory", port))
    roots = [pg_data, kafka_data]

    rng = random.Random(uuid.uuid4().int)
    tag = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(8))
    name = f"Quillon Marwick{tag}"
    mpi = f"MPI-{rng.randrange(10**9):09d}{tag}"
    candidates = [(date(1940, 1, 1) + timedelta(days=rng.randrange(25000))).isoformat() for _ in range(8)]
    baseline = scan(roots, [c.encode() for c in candidates])
    dob = next(c for c in candidates if not baseline[c.encode()])  # a date no file holds yet
    note = f"{name} (DOB {dob}) said she stopped taking lithium after the eviction"
    cad_number = str(rng.randrange(10**11, 10**12))
    generic = load_profile("generic")
    cad_profile = generic.model_copy(update={"fields": generic.fields | {"remarks": "remarks"}})
    incident = f"{cad_profile.agency}:{cad_number}"
    remark = f"caller says {name} is on the bridge again"

    try:
        async with open_runtime(settings) as rt:
            person = pseudonymize(rt.pseudonym_key, SYSTEM, mpi)
            cad_row = {"incident_number": cad_number, "received_at": "2026-02-01T08:40:00+00:00",
                       "call_type_initial": "PERSON IN CRISIS", "disposition_code": "VOLTX",
                       "disposition_text": f"took {name} to Harborview", "remarks": remark,
                       "longitude": "-122.335167", "latitude": "47.608013"}
            cad = await ingest_batch(
                [RawRecord("calls.csv:2", json.dumps(cad_row).encode(), cad_row)],
                CadMapper(cad_profile, keyring=rt.keyring), rt.log,
                DeadLetterSink(cad_profile.source, "cad", rt.deadletter_sealer),
            )
            assert cad.appended == 1 and cad.dead_lettered == 0
            base = {"case_id": f"c-{tag}", "person": {"system": SYSTEM, "id": mpi}, "version": 1}
            records = [
                base | {"record_id": "r1", "record_type": "case_opened", "program": "coresp",
                        "occurred_at": "2026-02-01T09:00:00+00:00", "cad_incident_id": incident},
                base | {"record_id": "r2", "record_type": "contact_logged", "contact_kind": "in_person",
                        "occurred_at": "2026-02-01T10:00:00+00:00", "cad_incident_id": incident,
                        "note": note},
                # broken (no usable time): a dead letter of the person, with their name and DOB
                base | {"record_id": "r3", "record_type": "contact_logged", "occurred_at": "yesterday",
                        "name": name, "dob": dob, "note": note},
            ]
            raw = [case_record(r, f"forensic:{i}", json.dumps(r).encode()) for i, r in enumerate(records)]
            counts = await ingest_batch(
                raw, CaseMapper(SOURCE, rt.pseudonym_key, rt.keyring), rt.log,
                DeadLetterSink(SOURCE, "cases", rt.deadletter_sealer),
            )
            assert counts.appended == 2 and counts.dead_lettered == 1
            await project(rt, until_caught_up=True)
            kid = rt.keyring.key_id(person)
            dl_id = (await rt.pool.fetchval(
                f"SELECT id FROM {settings.core_schema}.deadletters WHERE source = $1", SOURCE
            ))
        sealed = await asyncio.to_thread(run_hub, settings, "seal", "--once")
        assert sealed.returncode == 0, sealed.stderr
        before = await asyncio.to_thread(report_counts, settings)
        shown = await asyncio.to_thread(
            run_hub, settings, "deadletters", "show", dl_id, "--reveal", "--reason", "forensic test", "--json"
        )
        assert shown.returncode == 0 and name in shown.stdout  # the operator could read it before

        erased = await asyncio.to_thread(
            run_hub, settings, "erase", "--person", person, "--basis", "RR-forensic", "--requested-by", "dpo",
            "--json",
        )
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout)["key_destroyed"] is True
        assert json.loads(erased.stdout)["incident_keys_destroyed"] == 1  # the linked call's text

        shown = await asyncio.to_thread(
            run_hub, settings, "deadletters", "show", dl_id, "--reveal", "--reason", "forensic test", "--json"
        )
        assert shown.returncode == 0, shown.stderr
        after_show = json.loads(shown.stdout)
        assert after_show["erased"] is True and after_show["raw"] is None
        assert name not in shown.stdout and dob not in shown.stdout and mpi not in shown.stdout

        async with open_runtime(settings) as rt:
            await project(rt, until_caught_up=True)
            assert rt.keyring.token.destroy(kid) == 0  # no token key of the person is left
            incident_kid = rt.keyring.key_id(incident_subject(incident))
            assert rt.keyring.token.destroy(incident_kid) == 0  # nor of the linked incident
        sealed = await asyncio.to_thread(run_hub, settings, "seal", "--once")
        assert sealed.returncode == 0, sealed.stderr
        verified = await asyncio.to_thread(run_hub, settings, "verify")
        assert verified.returncode == 0, verified.stderr
        assert await asyncio.to_thread(report_counts, settings) == before

        as_postgres("CHECKPOINT", port)
        needles = {"name": name, "DOB": dob, "MPI id": mpi, "clinical text": "stopped taking lithium",
                   "CAD remark": remark, "exact coordinates": "122.335167"}
        found = scan(roots, [n.encode() for n in needles.values()])
        leaks = {label: found[text.encode()] for label, text in needles.items() if found[text.encode()]}
        assert not leaks, f"clear identifiers found after erasure: {leaks}"
        master = secret_bytes(settings, "master.key")
        assert master_key_openings([pg_data], master, kid) == []
        assert master_key_openings([pg_data], master, incident_kid) == []
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)
