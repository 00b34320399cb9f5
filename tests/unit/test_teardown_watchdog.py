"""The session-teardown watchdog: a process whose event loop cannot close (a task that
ignores its cancellation, as a client a failed test left running can) is ended with a
named task and exit code 3 instead of holding CI until its time limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

from hub.kernel.settings import PROJECT_ROOT

HUNG = textwrap.dedent(
    """
    import asyncio
    from tests import teardown_watchdog

    async def stubborn_client_routine():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallowed: asyncio.run's closing cancellation never ends this task

    async def main():
        asyncio.get_running_loop().create_task(stubborn_client_routine(), name="stubborn")
        await asyncio.sleep(0)
        teardown_watchdog.arm(1.0)  # as the last test's teardown does

    asyncio.run(main())
    """
)


def test_a_teardown_that_never_ends_is_ended_with_its_task_named() -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", HUNG], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "teardown watchdog: the session's teardown did not end in 1 s" in done.stderr
    assert "task stubborn <coroutine object stubborn_client_routine" in done.stderr
    assert re.search(r"\n    <string>:\d+ stubborn_client_routine\n", done.stderr)  # where it waits


def test_a_disarmed_watchdog_lets_the_process_end_normally() -> None:
    script = "from tests import teardown_watchdog\nteardown_watchdog.arm(0.5)\nteardown_watchdog.disarm()\n"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", script + "import time; time.sleep(1.5)"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "teardown watchdog" not in done.stderr
