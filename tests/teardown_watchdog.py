"""A watchdog over the end of a pytest session: a session whose tests have all run but
whose teardown never ends (a task that survives the event loop's closing cancellation, e.g.
a client a failed test left started) would hold CI until its time limit and say nothing.

Armed when the last test's teardown begins (session fixtures, the session's event loop
and every task still alive are torn down there), disarmed when the session finishes. If it
fires, it writes every thread's stack and every pending asyncio task of every open event
loop (coroutine, where it waits) to stderr, then ends the process with exit code 3."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading

#: seconds the session's teardown may take before the watchdog ends it
TEARDOWN_LIMIT_S = 600.0
EXIT_CODE = 3

_timer: threading.Timer | None = None


def pending_tasks() -> list[str]:
    """Every task not done of every event loop not closed, with the frames it waits in
    (diagnostics: found through the collector, called from another thread)."""
    out: list[str] = []
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if loop.is_closed():
            continue
        for task in asyncio.all_tasks(loop):  # the loop's tasks not done (a copy, safe from here)
            frames = [f"{f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}"
                      for f in task.get_stack(limit=8)]
            out.append(f"task {task.get_name()} {task.get_coro()!r}\n    " + "\n    ".join(frames))
    return out


def _fire(limit_s: float) -> None:
    sys.stderr.write(f"\nteardown watchdog: the session's teardown did not end in {limit_s:g} s\n")
    for line in pending_tasks():
        sys.stderr.write(line + "\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_CODE)


def arm(limit_s: float = TEARDOWN_LIMIT_S) -> None:
    global _timer
    disarm()
    _timer = threading.Timer(limit_s, _fire, args=(limit_s,))
    _timer.daemon = True
    _timer.start()


def disarm() -> None:
    global _timer
    if _timer is not None:
        _timer.cancel()
        _timer = None
