"""``hub erase`` read as a forensic examiner would: after the erasure, every file under the
PostgreSQL data directory (heap, indexes, WAL, after a CHECKPOINT) and under the local
Kafka log directories is read with ``master.key`` AND every epoch key still on the token in
hand, and none of the person's clear identifiers (name, date of birth, MPI id), their
clinical text or the CAD remark naming them is found — nor their data key in clear, nor any
stored copy of their or the linked incident's data key that ``master.key`` or a remaining
epoch key opens (the same scan finds the copy before the erasure) — while ``hub verify``
passes and the aggregate report is unchanged. The erasure's rotation leaves the namespace
one epoch key on the token: the new one.

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
from pkcs11 import Mechanism
from pkcs11.exceptions import PKCS11Error
from pkcs11.mechanisms import GCMParams

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
from hub.kernel.keystore import epoch_aad, unwrap_key
from hub.kernel.namespace import Namespace
from hub.kernel.token import NONCE, Token, _on_token_thread
from projections.projector import project
from tests.conftest import in_ci, session_settings
from tests.integration.hubcli import run_hub

pytestmark = pytest.mark.integration

SOURCE = "cases/forensic"
SYSTEM = "mpi:county"
WINDOW = 512  # bytes after a key id in which a wrapped key would sit
CHUNK = 64 << 20


def _files(roots: Iterable[Path]) -> Iterable[Path]:
    """Every regular file under ``roots`` (a root may be a file itself)."""
    for root in roots:
        if root.is_file():
            yield root
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


def near(roots: Iterable[Path], kids: Iterable[str]) -> dict[str, list[tuple[str, bytes]]]:
    """Key id → (place, 60 bytes) for every offset within ``WINDOW`` bytes after each
    occurrence of the key id under ``roots`` (where a stored data key would sit: nonce 12 ‖
    ciphertext 32 ‖ tag 16), in one read of the files."""
    needles = {kid: kid.encode() for kid in kids}
    found: dict[str, list[tuple[str, bytes]]] = {kid: [] for kid in needles}
    overlap = WINDOW + max(len(n) for n in needles.values())
    for path in _files(roots):
        for base, data in _chunks(path, overlap):
            for kid, needle in needles.items():
                pos = data.find(needle)
                while pos >= 0:
                    window = data[pos : pos + len(needle) + WINDOW]
                    for off in range(len(needle), len(window) - 59):
                        found[kid].append((f"{path}@{base + pos + off}", window[off : off + 60]))
                    pos = data.find(needle, pos + 1)
    return found


def master_key_openings(candidates: list[tuple[str, bytes]], master: bytes, kid: str) -> list[str]:
    """The places of ``candidates`` (of :func:`near`) that open as ``kid``'s data key
    wrapped by ``master`` (the layout before the token)."""
    hits: list[str] = []
    for place, blob in candidates:
        try:
            unwrap_key(master, kid, blob)
        except ValueError:
            continue
        hits.append(place)
    return hits


def epoch_key_openings(candidates: list[tuple[str, bytes]], token: Token, kid: str) -> dict[str, bytes]:
    """Place → data key for the ``candidates`` (of :func:`near`) that one of the namespace's
    epoch keys still on the token opens (with the AAD of any epoch number up to the
    highest): what an examiner holding the token could recover."""

    def run() -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        epochs = token.epochs()
        for epoch in epochs:
            key = token._find(epoch)
            for aad in [epoch_aad(kid, n) for n in range(1, max(epochs) + 1)]:
                for place, blob in candidates:
                    params = GCMParams(blob[:NONCE], aad, 128)
                    try:
                        plain = key.decrypt(blob[NONCE:], mechanism=Mechanism.AES_GCM, mechanism_param=params)
                    except PKCS11Error:
                        continue
                    found[place] = bytes(plain)
        return found

    return _on_token_thread(run)


def as_postgres(sql: str, port: int, database: str = "postgres") -> str:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-d", database, "-tAc", sql],
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
            incident_kid = rt.keyring.key_id(incident_subject(incident))
            dl_id = (await rt.pool.fetchval(
                f"SELECT id FROM {settings.core_schema}.deadletters WHERE source = $1", SOURCE
            ))
            keys = await rt.keyring.resolve_ids([kid, incident_kid])
            data_keys = {k: keys.key_by_id(k) for k in (kid, incident_kid)}
            assert None not in data_keys.values()
            old_epochs = rt.keyring.token.epochs()
            # the scan works: before the erasure, the epoch key opens the stored copy of each key
            as_postgres("CHECKPOINT", port)
            table = f"{settings.core_schema}.person_keys"
            heap = [pg_data / as_postgres(
                f"SELECT pg_relation_filepath('{table}')", port, settings.postgres.database
            )]
            stored = near(heap, [kid, incident_kid])
            for k in (kid, incident_kid):
                assert data_keys[k] in epoch_key_openings(stored[k], rt.keyring.token, k).values()
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
            token = rt.keyring.token
            epochs = token.epochs()  # the rotation's new epoch key only; the old one is destroyed
            assert len(epochs) == 1 and epochs[0] > max(old_epochs) and not set(epochs) & set(old_epochs)
        sealed = await asyncio.to_thread(run_hub, settings, "seal", "--once")
        assert sealed.returncode == 0, sealed.stderr
        verified = await asyncio.to_thread(run_hub, settings, "verify")
        assert verified.returncode == 0, verified.stderr
        assert await asyncio.to_thread(report_counts, settings) == before

        as_postgres("CHECKPOINT", port)
        texts = {"name": name, "DOB": dob, "MPI id": mpi, "clinical text": "stopped taking lithium",
                 "CAD remark": remark, "exact coordinates": "122.335167"}
        needles = {label: text.encode() for label, text in texts.items()}
        needles |= {f"data key {k} in clear": key for k, key in data_keys.items() if key is not None}
        found = scan(roots, needles.values())
        leaks = {label: found[needle] for label, needle in needles.items() if found[needle]}
        assert not leaks, f"found after erasure: {leaks}"
        stored = near([pg_data], [kid, incident_kid])
        assert stored[kid] and stored[incident_kid]  # the key ids are still there (tombstones)
        master = secret_bytes(settings, "master.key")
        async with open_runtime(settings) as rt:  # every epoch key still on the token, in hand
            for k in (kid, incident_kid):
                assert master_key_openings(stored[k], master, k) == []
                assert epoch_key_openings(stored[k], rt.keyring.token, k) == {}
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)
