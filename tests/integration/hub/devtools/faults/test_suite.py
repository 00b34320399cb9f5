"""The short fault suite (issue 13 item 8) as ``make test`` runs it: its own 3-broker KRaft
cluster and PostgreSQL, the hub's real processes under one of each fault (leader SIGKILL,
two brokers down, a SIGKILL of every supervised process, PostgreSQL immediate and fast
restarts, a connection cut in the append window, a flapping and a hung EHR), judged
against a clean run: every number must be 0 and the exit code 0. The long version is
``make faults`` (docs/operators.md, the release gate)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from hub.devtools.infra.proc import port_is_free
from hub.kernel.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def free_base() -> int:
    """A base port whose six cluster ports (base..base+2, base+10..base+12) are free."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 29000, 20)
        if all(port_is_free("127.0.0.1", base + d) for d in (0, 1, 2, 10, 11, 12)):
            return base
    raise RuntimeError("no free port range for the fault cluster")


def test_short_fault_suite_loses_nothing_and_hangs_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = free_base()
    pg_port = base + 15
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.devtools.faults",
            "--window-s",
            "30",
            "--seed",
            "5",
            "--base-port",
            str(base),
            "--pg-port",
            str(pg_port),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    for line in (
        "lost events:            0",
        "conflicting copies:     0",
        "read-model differences: 0",
        "EHR duplicates:         0",
        "hung processes:         0",
        "verdict:                PASS",
    ):
        assert line in out, out
    for fault in (
        "leader_kill",
        "two_brokers_down",
        "pg_immediate",
        "pg_fast",
        "append_cut: cut after the ack",
        "ehr_flapping",
        "ehr_hung",
    ):
        assert fault in out, out
    assert out.count("process_kill") >= 4, out
