"""Time and peak memory of one block of the benchmark.

Peak memory is this Python process's resident set (the broker and PostgreSQL run in
processes of their own and are not counted). On Linux the kernel's high-water mark
(``VmHWM``) is reset at the start of each block by writing ``5`` to
``/proc/self/clear_refs``, so each block reports its *own* peak, not the process
lifetime's. Where that is not possible (other systems, restricted ``/proc``) the peak
falls back to ``resource.getrusage(...).ru_maxrss``, a lifetime maximum; ``per_phase``
then says False and the numbers are upper bounds only.

Warnings that aiokafka logs inside a block (a produce retried after
``NotLeaderForPartition``, a fetch error) are counted in ``warnings``: a block with
retries measured something other than the steady path, and the report says so.

``growth_mib`` (peak minus the resident set at the start) approximates what the block
itself held at its worst; CPython keeps freed arenas, so a block that reuses memory an
earlier block freed shows less growth than it allocated.
"""

from __future__ import annotations

import gc
import logging
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
KIB_PER_MIB = 1024.0


def parse_status_kib(text: str, field: str) -> int | None:
    """The value in KiB of a ``/proc/<pid>/status`` line such as ``VmHWM:   13524 kB``
    (pure; None when the field is absent)."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == field:
            parts = rest.split()
            if parts and parts[0].isdigit():
                return int(parts[0])
    return None


def _status_kib(field: str) -> int | None:
    try:
        return parse_status_kib(STATUS.read_text(), field)
    except OSError:
        return None


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process; True when it was reset."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def current_rss_kib() -> int:
    rss = _status_kib("VmRSS")
    return rss if rss is not None else _maxrss_kib()


def peak_rss_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else _maxrss_kib()


@dataclass
class Sample:
    """What one measured block took: wall seconds, resident set at its start and its peak."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (user + system) during the block
    start_mib: float = 0.0
    peak_mib: float = 0.0
    per_phase: bool = True
    warnings: int = 0
    gc_pause_total_ms: float = 0.0  # this process's garbage-collection pauses during the block
    gc_pause_max_ms: float = 0.0

    @property
    def growth_mib(self) -> float:
        return max(0.0, self.peak_mib - self.start_mib)

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "seconds": round(self.seconds, 4),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "start_mib": round(self.start_mib, 1),
            "peak_mib": round(self.peak_mib, 1),
            "growth_mib": round(self.growth_mib, 1),
            "peak_is_per_phase": self.per_phase,
            "client_warnings": self.warnings,
            "gc_pause_total_ms": round(self.gc_pause_total_ms, 1),
            "gc_pause_max_ms": round(self.gc_pause_max_ms, 1),
        }


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class _GcPauses:
    """Times this process's garbage collections (``gc.callbacks``) into a sample."""

    def __init__(self, sample: Sample) -> None:
        self.sample, self.began = sample, 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
        elif self.began:
            ms = (time.perf_counter() - self.began) * 1000
            self.sample.gc_pause_total_ms += ms
            self.sample.gc_pause_max_ms = max(self.sample.gc_pause_max_ms, ms)


@contextmanager
def measured() -> Iterator[Sample]:
    """``with measured() as s: ...`` fills ``s`` when the block ends (also on error).
    Garbage is collected before the block so that it starts from a settled heap."""
    gc.collect()
    sample = Sample(start_mib=current_rss_kib() / KIB_PER_MIB)
    sample.per_phase = reset_peak()
    counter = _Counter()
    client_log = logging.getLogger("aiokafka")
    client_log.addHandler(counter)
    pauses = _GcPauses(sample)
    gc.callbacks.append(pauses)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        yield sample
    finally:
        gc.callbacks.remove(pauses)
        sample.seconds = time.perf_counter() - started
        sample.cpu_seconds = time.process_time() - cpu
        sample.peak_mib = peak_rss_kib() / KIB_PER_MIB
        client_log.removeHandler(counter)
        sample.warnings = counter.count


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return out


def _status_of(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB of a live process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss, hwm = parse_status_kib(text, "VmRSS"), parse_status_kib(text, "VmHWM")
    return (rss, hwm) if rss is not None and hwm is not None else None


class TreeMemory:
    """Samples a process and its descendants (``/proc``, every ``interval`` s, in a thread)
    until :meth:`stop`: ``process_peak_mib``, the largest peak resident set (``VmHWM``, the
    kernel's high-water mark of each process's own memory, so a spike between samples
    counts) of any one of them; ``tree_peak_mib``, the largest sum of their resident sets
    seen at one sample (what the whole job held at once, to within a sample). Unlike
    ``ru_maxrss`` of a child it never includes what a forked child inherited from its parent
    before ``exec``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self._hwm: dict[int, int] = {}
        self._tree_kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            total, todo = 0, [self.pid]
            while todo:
                pid = todo.pop()
                status = _status_of(pid)
                if status is None:
                    continue
                total += status[0]
                self._hwm[pid] = max(self._hwm.get(pid, 0), status[1])
                todo += _children(pid)
            self._tree_kib = max(self._tree_kib, total)
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    @property
    def process_peak_mib(self) -> float:
        return max(self._hwm.values(), default=0) / KIB_PER_MIB

    @property
    def tree_peak_mib(self) -> float:
        return self._tree_kib / KIB_PER_MIB
