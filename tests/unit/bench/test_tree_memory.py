"""The rebuild's memory as the bench measures it: every process of the job, each one's own
peak, and what they held at once."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.measure import TreeMemory

#: a parent holding 60 MiB that starts a child holding 40 MiB; both say when they hold it
#: and keep it until their standard input closes
JOB = """
import subprocess, sys
held = bytearray(60 * 1024 * 1024)
child = subprocess.Popen([sys.executable, "-c",
    "import sys; held = bytearray(40 * 1024 * 1024); print('child', flush=True); sys.stdin.read()"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print("both", flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


def test_the_largest_process_and_the_whole_tree_at_once_are_both_seen() -> None:
    job = subprocess.Popen(
        [sys.executable, "-c", JOB], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    memory = TreeMemory(job.pid, interval=0.05)
    try:
        assert job.stdout is not None and job.stdin is not None
        assert job.stdout.readline().strip() == "both"
        deadline = time.monotonic() + 20
        while memory.tree_peak_mib < 100 and time.monotonic() < deadline:  # seen both holding it
            time.sleep(0.05)
        job.stdin.close()
        job.wait(timeout=30)
    finally:
        memory.stop()
    assert 60 <= memory.process_peak_mib < 100  # the parent's own peak, not the child's added
    assert memory.tree_peak_mib >= 100
