"""SIGTERM always ends a long-running command within a bound (issue 13 item 3):
:func:`hub.entry.commands.stop_on_signals` sets the stop event, and a command that does not
end within the grace (here: one that ignores the event, as ``hub project`` did while faust
waited forever for acks) or gets a second signal exits at once with ``EXIT_FORCED``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from hub.kernel.output import EXIT_FORCED
from hub.kernel.settings import PROJECT_ROOT

STUCK = """
import asyncio, sys
from hub.entry.commands import stop_on_signals

async def main():
    stop = asyncio.Event()
    stop_on_signals(stop, "stuck command", {grace})
    print("ready", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await asyncio.Event().wait()  # a stop that never finishes

asyncio.run(main())
"""


def run_stuck(grace: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", STUCK.format(grace=grace)], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_stop_that_never_finishes_is_ended_after_the_grace() -> None:
    proc = run_stuck(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_FORCED
    assert 0.9 <= time.monotonic() - started < 10
    assert "stopping" in out and "stuck command: did not stop within 1s of SIGTERM" in err


def test_a_second_signal_ends_it_at_once() -> None:
    proc = run_stuck(60.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "stopping"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_FORCED and time.monotonic() - started < 10
    assert "second SIGINT" in err
